"""The engine's models: abstract jobs and items every kind subclasses (jobs.py,
items.py), and the engine's own records (records.py). Per-database SQL is in sql.py."""

from .items import BulkJobItem, ItemQuerySet
from .jobs import (
    ACTIVE_STATUSES,
    ATTEMPT_LOG_SIZE,
    ATTEMPT_REASON_LENGTH,
    FINISHED_STATUSES,
    PAUSED_PREFIX,
    WAITING_PREFIX,
    BulkJob,
    InterruptedPolicy,
    JobQuerySet,
    Status,
)
from .records import (
    ActivityHour,
    AlertDigest,
    AlertEvent,
    JobCount,
    ProcessorRun,
    RateBucket,
    Worker,
)

__all__ = [
    "ACTIVE_STATUSES",
    "ATTEMPT_LOG_SIZE",
    "ATTEMPT_REASON_LENGTH",
    "FINISHED_STATUSES",
    "PAUSED_PREFIX",
    "WAITING_PREFIX",
    "ActivityHour",
    "AlertDigest",
    "AlertEvent",
    "BulkJob",
    "BulkJobItem",
    "InterruptedPolicy",
    "ItemQuerySet",
    "JobCount",
    "JobQuerySet",
    "ProcessorRun",
    "RateBucket",
    "Status",
    "Worker",
]
