"""Engine settings, read lazily from settings.BULKJOBS and validated on use.

config/settings.py passes the BULKJOBS_* environment variables through as text, so a bad
value is reported here, when a command needs it, with the variable's name and what to
put instead, rather than as a crash while settings load. Durations accept decimals
(`BULKJOBS_STUCK_MINUTES=0.5`); counts (batch sizes, attempts, concurrency) must be whole
numbers; rates look like "50/min" (0 turns them off) and are returned as ratelimit.Rate.

Some values are only safe together: a claim is judged stuck after STUCK_MINUTES without a
heartbeat, and a healthy batch heartbeats only between items, so the stuck limit must
leave room for the heartbeat interval plus the slowest item a provider's timeouts allow.
combination_problems() says what is wrong; validate() refuses the harmful ones (a run
calls it first: the processing commands skip the system checks) and the system checks
(bulkjobs/checks.py) report all of them.
"""

import math
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

DEFAULTS = {
    "EMAIL_BATCH_SIZE": 50,
    "WALLET_BATCH_SIZE": 10,
    # Companies a run serves at once (threads: the work waits on the provider's replies).
    "EMAIL_CONCURRENCY": 8,
    "WALLET_CONCURRENCY": 4,
    # Provider connections one company's batch may use at once (see Batch._process_lanes);
    # wallet batches share the run's APNs connection, so one is enough there.
    "EMAIL_CONNECTIONS": 2,
    "WALLET_CONNECTIONS": 1,
    # The most mail connections a process holds at once (lanes in use and connections
    # kept between batches): the relay's limit per client. A run whose concurrency x
    # connections would exceed it gives each batch fewer lanes, then serves fewer
    # companies at once (Run).
    "EMAIL_MAX_CONNECTIONS": 16,
    # A mail connection a batch ends with is kept open this long for the next batch (and
    # a worker's next run) to reuse instead of opening one (emails/connections.py); 0
    # closes it after every batch.
    "EMAIL_KEEP_CONNECTIONS_SECONDS": 10.0,
    # Items a lane marks `processing` in one statement, with the outcomes of the ones
    # before, ahead of sending them (bulkjobs/engine/items.py). 1: each item is marked just
    # before it is sent, so a crash leaves at most the one in hand per lane undecided.
    # More saves statements (the database's share of a send on a near relay) but a crash
    # leaves up to that many per lane `processing`, settled by the kind's interrupted
    # policy though some were never sent, and a cancel or pause is seen only at the next
    # group (docs/lifecycle.md).
    "MARK_AHEAD": 1,
    # Each company's pace, shared by every run on every host (the original's pace).
    "EMAIL_COMPANY_RATE": "50/min",
    "WALLET_COMPANY_RATE": "10/min",
    "MAX_SECONDS": 50.0,
    "INACTIVE_MINUTES": 30.0,
    "STUCK_MINUTES": 10.0,
    "MAX_ATTEMPTS": 5,
    "RETRY_BASE_SECONDS": 30.0,
    "RETRY_MAX_SECONDS": 600.0,
    # An email's retries wait as a mail server's queue does: the waits before each retry,
    # spanning a day (1,491 minutes), so a greylist (minutes) or a full mailbox (hours)
    # is outlasted; 12 attempts in all. "off": MAX_ATTEMPTS with the backoff above.
    "EMAIL_RETRY_SCHEDULE": "1m,5m,15m,30m,1h,2h,3h,4h,6h,8h",
    # A job waiting for its provider (mail server down, login refused) fails after this.
    "PAUSE_LIMIT_HOURS": 24.0,
    # A heartbeat is written at most this often during a batch, and never less often
    # than a third of STUCK_MINUTES (heartbeat_seconds()), so a slow but healthy batch is
    # never judged stuck.
    "HEARTBEAT_SECONDS": 20.0,
    # Every processing command registers as a Worker and refreshes its row this often
    # (bulkjobs/engine/workers.py); a claim whose owner has not done so for
    # WORKER_TIMEOUT_SECONDS is released by the next run, long before STUCK_MINUTES.
    "WORKER_HEARTBEAT_SECONDS": 10.0,
    "WORKER_TIMEOUT_SECONDS": 30.0,
    # A gap longer than this between two runs means the processor was not running
    # (cron stopped, host down); that time does not count towards inactivity.
    "RUN_GAP_SECONDS": 180.0,
    # An engine statement waits this long for a row another transaction holds, then the
    # company is passed over for the run; no statement of the engine runs longer than
    # STATEMENT_TIMEOUT_SECONDS (bulkjobs/engine/locks.py).
    "LOCK_TIMEOUT_SECONDS": 5.0,
    "STATEMENT_TIMEOUT_SECONDS": 60.0,
    # Alerts and monitoring (bulkjobs/ops/alerts.py, bulkjobs/ops/health.py): a job paused this
    # long is reported to its company; a processor silent this long to the operators
    # (and makes /healthz and check_processors fail).
    "ALERT_PAUSED_HOURS": 2.0,
    "PROCESSOR_STALE_MINUTES": 10.0,
    "ALERT_WEBHOOK_TIMEOUT": 5.0,
    # Finished jobs older than this are deleted by prune_jobs (bulkjobs/ops/retention.py).
    "RETENTION_DAYS": 180,
}

#: Settings that count things: whole numbers only.
WHOLE_NUMBERS = {
    "EMAIL_BATCH_SIZE",
    "WALLET_BATCH_SIZE",
    "MAX_ATTEMPTS",
    "EMAIL_CONCURRENCY",
    "WALLET_CONCURRENCY",
    "EMAIL_CONNECTIONS",
    "WALLET_CONNECTIONS",
    "EMAIL_MAX_CONNECTIONS",
    "MARK_AHEAD",
    "RETENTION_DAYS",
}
#: Durations that may be 0 (off).
ZERO_TURNS_OFF = {"EMAIL_KEEP_CONNECTIONS_SECONDS"}
#: Settings that are rates ("50/min"); 0 turns them off (None).
RATES = {"EMAIL_COMPANY_RATE", "WALLET_COMPANY_RATE"}
#: Settings that are lists of waits ("1m,5m,2h"); "off" turns them off (None).
SCHEDULES = {"EMAIL_RETRY_SCHEDULE"}
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


#: Provider timeouts (project settings, seconds): one item may wait for its provider up to
#: about two of them (an SMTP envelope, then the message's final "."; a push, then a
#: Google request), between two heartbeats.
PROVIDER_TIMEOUTS = {"EMAIL_TIMEOUT": 20.0, "APNS_TIMEOUT": 10.0, "GOOGLE_WALLET_TIMEOUT": 15.0}
#: The stuck limit must be at least this many times the longest provider timeout: a
#: heartbeat interval (a third of the limit) plus an item of two timeouts fit in it.
STUCK_TIMEOUT_FACTOR = 3
#: The heartbeat interval is at most this fraction of the stuck limit.
HEARTBEAT_FRACTION_OF_STUCK = 1 / 3


def validate():
    """Check every setting now (a run calls this first), so a bad value stops the command
    at once instead of surfacing only when some batch first needs it; and refuse the
    combinations that would hurt (combination_problems(), errors only)."""
    for name in DEFAULTS:
        get(name)
    for problem in combination_problems():
        if problem.error:
            raise ImproperlyConfigured(f"{problem.message} {problem.hint}")


def heartbeat_seconds():
    """How often a running batch refreshes its claim's heartbeat: HEARTBEAT_SECONDS, but
    never more than a third of the stuck limit, so a claim is refreshed at least twice
    more before it could be judged stuck, whatever the two settings say."""
    stuck_seconds = 60 * get("STUCK_MINUTES")
    return min(get("HEARTBEAT_SECONDS"), stuck_seconds * HEARTBEAT_FRACTION_OF_STUCK)


@dataclass(frozen=True)
class Problem:
    """A combination of settings that is unsafe (error) or does not do what it says."""

    id: str
    message: str
    hint: str
    error: bool = True


def combination_problems():
    """The unsafe combinations of the engine's settings, as Problems (ids bulkjobs.E001,
    W001, W002, W004). Assumes each setting is valid on its own (validate(), check_settings)."""
    problems = []
    stuck_minutes = get("STUCK_MINUTES")
    stuck_seconds = 60 * stuck_minutes
    timeout_name, timeout = longest_provider_timeout()
    needed_minutes = STUCK_TIMEOUT_FACTOR * timeout / 60
    if stuck_seconds < STUCK_TIMEOUT_FACTOR * timeout:
        problems.append(
            Problem(
                "bulkjobs.E001",
                f"BULKJOBS_STUCK_MINUTES = {stuck_minutes:g} ({stuck_seconds:g} s) is too "
                f"short for {timeout_name} = {timeout:g} s: a batch heartbeats between items, "
                "and one item may wait for its provider up to about twice that timeout, "
                "so a healthy batch would be judged stuck and its item in flight failed as "
                "interrupted (or done twice).",
                f"Set BULKJOBS_STUCK_MINUTES to at least {_round_up(needed_minutes)} "
                f"({STUCK_TIMEOUT_FACTOR} x {timeout_name}), or lower {timeout_name}; fix "
                "it in the environment or .env.",
            )
        )
    configured = getattr(settings, "BULKJOBS", {})
    if "HEARTBEAT_SECONDS" in configured:
        heartbeat = get("HEARTBEAT_SECONDS")
        if heartbeat > stuck_seconds * HEARTBEAT_FRACTION_OF_STUCK:
            problems.append(
                Problem(
                    "bulkjobs.W001",
                    f"BULKJOBS['HEARTBEAT_SECONDS'] = {heartbeat:g} is not well below the "
                    f"stuck limit (BULKJOBS_STUCK_MINUTES = {stuck_minutes:g}, "
                    f"{stuck_seconds:g} s): the engine heartbeats every "
                    f"{heartbeat_seconds():g} s instead (a third of the limit).",
                    "Remove HEARTBEAT_SECONDS from BULKJOBS, or set it to at most "
                    f"{_round_down(stuck_seconds * HEARTBEAT_FRACTION_OF_STUCK)}.",
                    error=False,
                )
            )
    inactive_minutes = get("INACTIVE_MINUTES")
    if inactive_minutes <= stuck_minutes:
        problems.append(
            Problem(
                "bulkjobs.W002",
                f"BULKJOBS_INACTIVE_MINUTES = {inactive_minutes:g} is not above "
                f"BULKJOBS_STUCK_MINUTES = {stuck_minutes:g}: a job whose run died fails "
                "as inactive as soon as its claim is released as stuck, instead of going "
                "on.",
                "Set BULKJOBS_INACTIVE_MINUTES above BULKJOBS_STUCK_MINUTES (the defaults "
                "are 30 and 10).",
                error=False,
            )
        )
    lock, statement = get("LOCK_TIMEOUT_SECONDS"), get("STATEMENT_TIMEOUT_SECONDS")
    if statement <= lock:
        problems.append(
            Problem(
                "bulkjobs.W004",
                f"BULKJOBS_STATEMENT_TIMEOUT_SECONDS = {statement:g} is not above "
                f"BULKJOBS_LOCK_TIMEOUT_SECONDS = {lock:g}: a statement waiting for a locked "
                "row is cancelled as too slow before its lock wait ends, and the log cannot "
                "name the transaction in the way.",
                "Set BULKJOBS_STATEMENT_TIMEOUT_SECONDS well above "
                "BULKJOBS_LOCK_TIMEOUT_SECONDS (the defaults are 60 and 5).",
                error=False,
            )
        )
    return problems


def longest_provider_timeout():
    """(setting name, seconds) of the longest of the provider timeouts."""
    timeouts = {
        name: _number(getattr(settings, name, default)) or default
        for name, default in PROVIDER_TIMEOUTS.items()
    }
    name = max(timeouts, key=timeouts.get)
    return name, timeouts[name]


def _round_up(value):
    """value to two decimals, rounded up (a minimum to set)."""
    return f"{math.ceil(value * 100 - 1e-9) / 100:g}"


def _round_down(value):
    return f"{math.floor(value * 100 + 1e-9) / 100:g}"


def get(name):
    """The setting's value: an int for counts, a float (or int) for durations, a
    ratelimit.Rate (or None: off) for rates."""
    value = getattr(settings, "BULKJOBS", {}).get(name, DEFAULTS[name])
    if name in RATES:
        from .engine.ratelimit import parse_rate

        try:
            return parse_rate(value, setting=f"BULKJOBS_{name}")
        except ImproperlyConfigured as exc:
            raise ImproperlyConfigured(
                f"{str(exc).removesuffix('.')}; fix it in the environment or .env."
            ) from None
    if name in SCHEDULES:
        return _schedule(name, value)
    if name in WHOLE_NUMBERS:
        parsed = _whole_number(value)
        if parsed is None or parsed < 1:
            raise ImproperlyConfigured(
                f"BULKJOBS_{name} must be a whole number of at least 1 (like "
                f"{DEFAULTS[name]}), got {value!r}; fix it in the environment or .env."
            )
        return parsed
    parsed = _number(value)
    if name in ZERO_TURNS_OFF and parsed == 0:
        return parsed
    if parsed is None or parsed <= 0:
        allowed = "zero or a positive number" if name in ZERO_TURNS_OFF else "a positive number"
        raise ImproperlyConfigured(
            f"BULKJOBS_{name} must be {allowed} (decimals allowed, like "
            f"{DEFAULTS[name]}), got {value!r}; fix it in the environment or .env."
        )
    return parsed


def _whole_number(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _number(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def max_attempts_configured():
    """settings.BULKJOBS' MAX_ATTEMPTS when it is set (a cap for a retry schedule too),
    else None."""
    if "MAX_ATTEMPTS" in getattr(settings, "BULKJOBS", {}):
        return get("MAX_ATTEMPTS")
    return None


def _schedule(name, value):
    """A tuple of waits in seconds from "1m,5m,2h" (units s, m, h, d; a bare number is
    seconds), or None for "off"."""
    text = str(value).strip().lower()
    if text == "off":
        return None
    waits = []
    for part in text.replace(" ", ",").split(","):
        if not part:
            continue
        unit = _UNITS.get(part[-1])
        number = _number(part[:-1] if unit else part)
        if number is None or number <= 0:
            waits = []
            break
        waits.append(float(number) * (unit or 1))
    if not waits:
        raise ImproperlyConfigured(
            f"BULKJOBS_{name} must be waits separated by commas, each a number with a unit "
            f"s, m, h or d (like {DEFAULTS[name]!r}), or 'off'; got {value!r}; fix it in "
            "the environment or .env."
        )
    return tuple(waits)
