"""The database's clock: the one time every host's engine goes by.

Hosts may be minutes apart; the database is one. Every time the engine writes or
compares (claims and heartbeats, the stuck, inactivity and pause rules, the run-gap
rule, retry times, rate buckets) is the database's. A process reads the database's time
once per run (sync()) and keeps the difference to its own clock: now() and time() are
the host's clock plus that difference, so they cost no query, and between two reads they
drift only as much as the host's clock drifts in a minute.

sync() also reads the database server's identity (models.sql.database_clock), which
tells a failover apart from a restart (bulkjobs.engine.bookkeeping).
"""

import logging
import threading
import time as host_time
from dataclasses import dataclass
from datetime import timedelta

from django.db import connection
from django.utils import timezone

from ..models.sql import database_clock

#: A host clock further off the database's than this is reported (log, /healthz, the
#: dashboard's health line): its own times are not used, but it hints at a host whose
#: other timestamps (logs, TLS) are wrong too.
SKEW_WARNING_SECONDS = 60.0

log = logging.getLogger("bulkjobs.clock")


@dataclass(frozen=True)
class Reading:
    """One reading of the database's clock."""

    #: seconds the database's clock is ahead of this host's (negative: behind)
    offset: float
    #: the database server's identity (see models.sql.database_clock)
    identity: str
    #: whether a commit is on the server's standbys too (None: unknown)
    durable: bool | None = True


_lock = threading.Lock()
_reading = Reading(offset=0.0, identity="")


def sync():
    """Read the database's time and identity now (one query) and keep them for now(),
    time() and identity(). Returns the Reading. Logs once when the host's clock moves
    beyond SKEW_WARNING_SECONDS of the database's, and once when it comes back."""
    global _reading
    before = host_time.time()
    database_time, identity, durable = database_clock(connection)
    after = host_time.time()
    # The database read its clock somewhere within the round trip: take the middle.
    reading = Reading(database_time.timestamp() - (before + after) / 2, identity, durable)
    with _lock:
        previous, _reading = _reading, reading
    if reading.durable is False and previous.durable is not False:
        log.warning(
            "The database has standbys replicated asynchronously: after a failover to one, "
            "items processed in the replication lag may be processed again (for email, "
            "only the batch each job had in flight is kept from it; see docs/lifecycle.md)"
        )
    was_off, is_off = is_skewed(previous.offset), is_skewed(reading.offset)
    if is_off and not was_off:
        log.warning(
            "This host's clock is %s the database's; the engine goes by the database's",
            describe_skew(reading.offset),
        )
    elif was_off and not is_off:
        log.info("This host's clock agrees with the database's again")
    return reading


def reading():
    """The last Reading (offset 0 and no identity before the first sync())."""
    return _reading


def now():
    """The database's time now, as an aware datetime."""
    return timezone.now() + timedelta(seconds=_reading.offset)


def time():
    """The database's time now, in Unix seconds."""
    return host_time.time() + _reading.offset


def is_skewed(offset):
    return abs(offset) > SKEW_WARNING_SECONDS


def describe_skew(offset):
    """ "12 min 5 s behind" / "3 s ahead of": how this host's clock stands to the
    database's, for people."""
    seconds = round(abs(offset))
    minutes, seconds = divmod(seconds, 60)
    amount = f"{minutes} min {seconds} s" if minutes else f"{seconds} s"
    # offset > 0: the database is ahead, so the host is behind.
    return f"{amount} {'behind' if offset > 0 else 'ahead of'}"
