"""What an item's outcome means for the item: done, retry later, failed, or given up.

A pure function of its inputs (no database, no settings, no clock, no global random), so
the whole table of cases is tested directly (tests/engine/test_decisions.py). The engine
passes the run's settings, the current time and a random source.
"""

import math
import random
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from . import reasons
from .kinds import Outcome
from .models import Status


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: a random wait in [c/2, c], c = base * 2**(attempts-1),
    capped at max_seconds. Never less than half the ceiling, so a retry is not immediate."""

    base_seconds: float
    max_seconds: float

    def delay(self, attempts, rng):
        ceiling = min(self.max_seconds, self.base_seconds * 2 ** max(0, attempts - 1))
        return timedelta(seconds=rng.uniform(ceiling / 2, ceiling))


@dataclass(frozen=True)
class Schedule:
    """Waits as a mail server's queue retries: the n-th retry waits waits[n-1] seconds,
    plus up to a tenth more (jitter, so that items failed together do not all come back
    at once), never less: a greylist's minimum wait is passed on time."""

    waits: tuple

    @property
    def max_attempts(self):
        """The first attempt and one per wait."""
        return len(self.waits) + 1

    def delay(self, attempts, rng):
        wait = self.waits[min(max(0, attempts - 1), len(self.waits) - 1)]
        return timedelta(seconds=rng.uniform(wait, wait * 1.1))


@dataclass(frozen=True)
class Decision:
    """The item's new state, and which counter the outcome goes to (Outcome.DONE/FAILED/RETRY)."""

    counted_as: str
    status: str
    #: a bulkjobs.reasons.Reason, or a text (mapped to its code when it is a known one)
    reason: object
    next_attempt_at: datetime | None
    processed_at: datetime | None
    #: when it was decided: the time of the attempt's attempt_log entry
    decided_at: datetime | None = None
    #: extra item fields the kind saves with the outcome (Outcome.fields)
    fields: dict = field(default_factory=dict)

    def changes(self):
        """The item fields to write (ItemQuerySet.record): the reason's columns (its
        English words, code, parameters and the provider's words) go into the same
        UPDATE as the outcome."""
        return {
            **self.fields,
            "status": self.status,
            **reasons.columns(self.reason),
            "next_attempt_at": self.next_attempt_at,
            "processed_at": self.processed_at,
        }


def decide(
    outcome: Outcome,
    *,
    attempts: int,
    max_attempts: int,
    now: datetime,
    backoff: Backoff | Schedule,
    rng: random.Random,
) -> Decision:
    """Decide an item's new state from its outcome and the attempts it has spent (this one
    included). A wait goes back to pending after its retry_after. A retry after the last allowed attempt gives up (failed, "Gave up after N
    attempts: ..."); a retry waits for its backoff, and never less than the provider's
    own Retry-After (outcome.retry_after)."""
    made = {"decided_at": now, "fields": outcome.fields}
    if outcome.kind == Outcome.DONE:
        return Decision(Outcome.DONE, Status.COMPLETED, outcome.reason, None, now, **made)
    if outcome.kind == Outcome.FAILED:
        return Decision(Outcome.FAILED, Status.FAILED, outcome.reason, None, now, **made)
    if outcome.kind == Outcome.WAIT:
        # Not an attempt (the caller refunds it): no backoff, no retry limit; the pause
        # limit of the job bounds the wait instead.
        wait = timedelta(seconds=outcome.retry_after or 0)
        return Decision(Outcome.WAIT, Status.PENDING, outcome.reason, now + wait, None, **made)
    if outcome.kind != Outcome.RETRY:
        raise ValueError(f"Unknown outcome {outcome.kind!r}.")
    if attempts >= max_attempts:
        reason = reasons.wrap("gave_up", outcome.reason, attempts=attempts)
        return Decision(Outcome.FAILED, Status.FAILED, reason, None, now, **made)
    delay = backoff.delay(attempts, rng)
    if outcome.retry_after:
        delay = max(delay, timedelta(seconds=outcome.retry_after))
    return Decision(Outcome.RETRY, Status.PENDING, outcome.reason, now + delay, None, **made)


_DELAY_SECONDS = re.compile(r"[0-9]+(\.[0-9]+)?")
#: The longest provider wait taken as given: a week. A broken or hostile header
#: ("99999999999", a date in the year 9999) would otherwise overflow the item's next
#: attempt time and crash its batch.
MAX_RETRY_AFTER_SECONDS = 7 * 24 * 3600


def parse_retry_after(value, now=None):
    """Seconds to wait from a Retry-After header (RFC 9110 section 10.2.3), or None.

    Either delay-seconds ("120"; a decimal such as "1.5" is taken too) or an HTTP-date
    ("Wed, 21 Oct 2015 07:28:00 GMT"), whose wait is counted from `now` (an aware
    datetime; this module reads no clock, so callers pass timezone.now(), and without it
    a date gives None) and rounded up to whole seconds; a date already past gives 0, one
    beyond MAX_RETRY_AFTER_SECONDS that. None for a missing, empty, negative or
    unreadable value.
    """
    value = (value or "").strip()
    if not value:
        return None
    if _DELAY_SECONDS.fullmatch(value):
        return min(float(value), MAX_RETRY_AFTER_SECONDS)
    if now is None:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # an HTTP-date is always GMT
    return float(min(max(0, math.ceil((when - now).total_seconds())), MAX_RETRY_AFTER_SECONDS))
