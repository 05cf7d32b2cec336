"""Rate limits shared by every process on every host, kept as buckets in the database.

A limit such as ``50/min`` allows a burst of up to 50 and then one more every 1.2 s. Each
limit is one `RateBucket` row holding a *theoretical arrival time* (GCRA, the generic
cell rate algorithm): taking k tokens moves it forward by k intervals, and is allowed
while it stays within one period of now. Taking is a conditional UPDATE with a row-count
check, so cron runs and workers on any number of hosts never overspend a limit together;
no lock is held and no clock other than the hosts' own is needed.
"""

import math
import re
from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured
from django.db.models import F, Q, Value
from django.db.models.fields import FloatField
from django.db.models.functions import Greatest

from ..models import RateBucket
from . import clock

_UNITS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}
# Bucket times are sums of float intervals; a microsecond of slack keeps a token that is
# due exactly now from being refused by rounding.
_SLACK = 1e-6
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*([a-z]+?)s?\s*$")


@dataclass(frozen=True)
class Rate:
    """`count` tokens per `period` seconds; a burst may spend one period's worth at once."""

    count: float
    period: float

    @property
    def interval(self):
        return self.period / self.count

    @property
    def burst(self):
        return max(1, math.floor(self.count))

    def __str__(self):
        unit = {1: "s", 60: "min", 3600: "h", 86400: "day"}.get(self.period)
        count = int(self.count) if self.count == int(self.count) else self.count
        return f"{count}/{unit}" if unit else f"{count} per {self.period:g} s"


def parse_rate(value, setting="rate"):
    """Parse "50/min", "20/s", "500/h", "1000/day"; "0", "", None or "off" mean no limit.

    Raises ImproperlyConfigured with the accepted forms for anything else.
    """
    if value is None:
        return None
    text = str(value).strip().lower()
    if text in ("", "0", "off", "none"):
        return None
    match = _RATE.match(text)
    unit = match and _UNITS.get(match.group(2))
    if not unit or float(match.group(1)) <= 0:
        raise ImproperlyConfigured(
            f"{setting} must look like '50/min', '20/s', '500/h' or '1000/day' "
            f"(or 0 for no limit), got {value!r}."
        )
    return Rate(count=float(match.group(1)), period=float(unit))


@dataclass(frozen=True)
class Grant:
    """How many of the wanted tokens were taken, and when the next one frees if not all."""

    granted: int
    #: Unix time at which at least one more token can be taken (None if all were granted).
    next_at: float | None = None


def take(key, rate, wanted, now=None):
    """Take up to `wanted` tokens from the bucket `key`; returns a Grant.

    The common case, a bucket with room for all of them, is one UPDATE. Otherwise the
    bucket is read once to grant what fits; a concurrent taker that moves the bucket in
    between only makes the second UPDATE match nothing, and the loop reads again.
    """
    if rate is None or wanted <= 0:
        return Grant(max(0, wanted))
    now = clock.time() if now is None else now
    for _ in range(5):
        if _take_exactly(key, rate, wanted, now):
            return Grant(wanted)
        tat = RateBucket.objects.filter(key=key).values_list("tat", flat=True).first()
        if tat is None:
            RateBucket.objects.bulk_create([RateBucket(key=key, tat=now)], ignore_conflicts=True)
            continue
        start = max(tat, now)
        fits = min(wanted, math.floor((now + rate.period - start + _SLACK) / rate.interval))
        if fits <= 0:
            return Grant(0, start + rate.interval - rate.period)
        if _take_exactly(key, rate, fits, now):
            return Grant(fits, start + (fits + 1) * rate.interval - rate.period)
    # Heavy contention for one bucket: give way this time rather than spin.
    return Grant(0, now + rate.interval)


def _take_exactly(key, rate, count, now):
    """One conditional UPDATE: take `count` tokens if they all fit now."""
    if count > rate.burst:
        return False
    cost = count * rate.interval
    # max(tat, now) + cost <= now + period  <=>  tat <= now + period - cost, since
    # now + cost <= now + period holds for any count within the burst.
    return bool(
        RateBucket.objects.filter(key=key, tat__lte=now + rate.period - cost + _SLACK).update(
            tat=Greatest(F("tat"), Value(now, output_field=FloatField())) + cost
        )
    )


def refund(key, rate, count):
    """Give back `count` tokens taken from the bucket `key` and not used (a later bucket
    refused them): one UPDATE moving the bucket's time back. A time before now means a
    full bucket, so a refund never allows more than the rate's burst."""
    if rate is None or count <= 0:
        return
    RateBucket.objects.filter(key=key).update(
        tat=Greatest(F("tat") - count * rate.interval, Value(0.0, output_field=FloatField()))
    )


def short_buckets(needs, now=None):
    """Of the buckets named in {(rate, tokens): [key, ...]}, the keys of those holding fewer
    than `tokens` tokens now (never more than the rate's burst is asked), in one query. A
    bucket never taken from is full, so it is never among them."""
    now = clock.time() if now is None else now
    condition = Q()
    for (rate, tokens), keys in needs.items():
        room = rate.period - min(tokens, rate.burst) * rate.interval
        condition |= Q(key__in=keys, tat__gt=now + room + _SLACK)
    if not condition:
        return set()
    return set(RateBucket.objects.filter(condition).values_list("key", flat=True))
