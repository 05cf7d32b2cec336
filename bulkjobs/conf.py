"""Engine settings, read lazily from settings.BULKJOBS and validated on use.

config/settings.py passes the BULKJOBS_* environment variables through as text, so a bad
value is reported here, when a command needs it, with the variable's name and what to
put instead, rather than as a crash while settings load. Durations accept decimals
(`BULKJOBS_STUCK_MINUTES=0.5`); counts (batch sizes, attempts, concurrency) must be whole
numbers; rates look like "50/min" (0 turns them off) and are returned as ratelimit.Rate.
"""

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
    # Each company's pace, shared by every run on every host (the original's pace).
    "EMAIL_COMPANY_RATE": "50/min",
    "WALLET_COMPANY_RATE": "10/min",
    "MAX_SECONDS": 50.0,
    "INACTIVE_MINUTES": 30.0,
    "STUCK_MINUTES": 10.0,
    "MAX_ATTEMPTS": 5,
    "RETRY_BASE_SECONDS": 30.0,
    "RETRY_MAX_SECONDS": 600.0,
    # A job waiting for its provider (mail server down, login refused) fails after this.
    "PAUSE_LIMIT_HOURS": 24.0,
    # A heartbeat is written at most this often during a batch; it must stay well
    # below STUCK_MINUTES so a slow but healthy batch is never judged stuck.
    "HEARTBEAT_SECONDS": 20.0,
    # Every processing command registers as a Worker and refreshes its row this often
    # (bulkjobs/engine/workers.py); a claim whose owner has not done so for
    # WORKER_TIMEOUT_SECONDS is released by the next run, long before STUCK_MINUTES.
    "WORKER_HEARTBEAT_SECONDS": 10.0,
    "WORKER_TIMEOUT_SECONDS": 30.0,
    # A gap longer than this between two runs means the processor was not running
    # (cron stopped, host down); that time does not count towards inactivity.
    "RUN_GAP_SECONDS": 180.0,
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
    "RETENTION_DAYS",
}
#: Settings that are rates ("50/min"); 0 turns them off (None).
RATES = {"EMAIL_COMPANY_RATE", "WALLET_COMPANY_RATE"}


def validate():
    """Check every setting now (a run calls this first), so a bad value stops the command
    at once instead of surfacing only when some batch first needs it."""
    for name in DEFAULTS:
        get(name)


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
    if name in WHOLE_NUMBERS:
        parsed = _whole_number(value)
        if parsed is None or parsed < 1:
            raise ImproperlyConfigured(
                f"BULKJOBS_{name} must be a whole number of at least 1 (like "
                f"{DEFAULTS[name]}), got {value!r}; fix it in the environment or .env."
            )
        return parsed
    parsed = _number(value)
    if parsed is None or parsed <= 0:
        raise ImproperlyConfigured(
            f"BULKJOBS_{name} must be a positive number (decimals allowed, like "
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
