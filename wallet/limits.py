"""Per-request rate limits of the wallet providers, shared by every process on every host.

Google Wallet allows 20 requests per second (its API FAQ, as quoted in
wallet/google/client.py), so that is the default; APNs publishes no figure, so its
limit is off unless `APNS_RATE_LIMIT` sets one. Each limit is a bucket of
bulkjobs/engine/ratelimit.py, a database row, so cron runs, `--loop` workers and their threads
on any number of hosts spend one budget together. The bucket keys are stable, since
operators may look at or reset the rows in `bulkjobs_ratebucket`:

- ``wallet:google``: one token per Google Wallet API request (not the OAuth token
  request, which Google counts elsewhere), taken in wallet/google/client.py;
- ``wallet:apns``: one token per push, taken in wallet/apple/apns.py.

A limit that is off costs nothing: no bucket is read or written.
"""

import time
from dataclasses import dataclass

from django.conf import settings

from bulkjobs.engine import clock, ratelimit
from bulkjobs.kinds import RateLimited

GOOGLE_BUCKET = "wallet:google"
APNS_BUCKET = "wallet:apns"
GOOGLE_DEFAULT = "20/s"
# Waiting this long for a slot is cheaper than giving the item back and claiming the job
# again; a longer wait gives the item back and lets the run serve other companies.
MAX_WAIT_SECONDS = 2.0


@dataclass(frozen=True)
class RequestLimit:
    """A provider's shared per-request limit: its bucket, its rate, and how to name it."""

    key: str
    rate: ratelimit.Rate
    provider: str

    @property
    def what(self):
        """How the job's reason names this limit: "the Google Wallet rate limit (20/s)"."""
        return f"the {self.provider} rate limit ({self.rate})"

    def acquire(self):
        """Take one token, sleeping for it if it frees within MAX_WAIT_SECONDS.

        Raises RateLimited (with the next slot's time) otherwise, so that the engine gives
        the item back without spending an attempt. Other takers may win a slot this one
        slept for; it then tries again, until it has slept MAX_WAIT_SECONDS in all.
        """
        slept = 0.0
        while True:
            grant = ratelimit.take(self.key, self.rate, 1)
            if grant.granted:
                return
            wait = max(0.0, grant.next_at - clock.time())
            if slept + wait > MAX_WAIT_SECONDS:
                raise RateLimited(self.what, grant.next_at)
            time.sleep(wait)
            slept += wait


def _limit(setting, default, key, provider):
    value = getattr(settings, setting, default)
    rate = ratelimit.parse_rate(value, setting)
    return RequestLimit(key, rate, provider) if rate is not None else None


def google_limit():
    """The `GOOGLE_WALLET_RATE_LIMIT` (default 20/s), or None when set to 0.

    Raises ImproperlyConfigured, naming the setting, for a value like "fast".
    """
    return _limit("GOOGLE_WALLET_RATE_LIMIT", GOOGLE_DEFAULT, GOOGLE_BUCKET, "Google Wallet")


def apns_limit():
    """The `APNS_RATE_LIMIT` (none by default), or None."""
    return _limit("APNS_RATE_LIMIT", "", APNS_BUCKET, "APNs")
