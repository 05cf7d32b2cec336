"""Engine settings, read lazily from settings.BULKJOBS and validated on use."""

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

DEFAULTS = {
    "EMAIL_BATCH_SIZE": 50,
    "WALLET_BATCH_SIZE": 10,
    "MAX_SECONDS": 50.0,
    "INACTIVE_MINUTES": 30,
    "STUCK_MINUTES": 10,
    "MAX_ATTEMPTS": 5,
    "RETRY_BASE_SECONDS": 30.0,
    "RETRY_MAX_SECONDS": 600.0,
    # A heartbeat is written at most this often during a batch; it must stay well
    # below STUCK_MINUTES so a slow but healthy batch is never judged stuck.
    "HEARTBEAT_SECONDS": 20.0,
    # A gap longer than this between two runs means the processor was not running
    # (cron stopped, host down); that time does not count towards inactivity.
    "RUN_GAP_SECONDS": 180.0,
}


def get(name):
    value = getattr(settings, "BULKJOBS", {}).get(name, DEFAULTS[name])
    if not isinstance(value, (int, float)) or value <= 0:
        raise ImproperlyConfigured(f"BULKJOBS[{name!r}] must be a positive number, got {value!r}.")
    return value
