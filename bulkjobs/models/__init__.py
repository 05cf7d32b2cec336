"""The engine's models: abstract jobs and items every kind subclasses (jobs.py,
items.py), the engine's own records (records.py) and who did what to a job
(actions.py). Per-database SQL is in sql.py."""

from .actions import JobAction
from .items import BulkJobItem, ItemQuerySet
from .jobs import (
    ACTIVE_STATUSES,
    ATTEMPT_LOG_SIZE,
    ATTEMPT_REASON_LENGTH,
    FINISHED_STATUSES,
    OPEN_STATUSES,
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
    "OPEN_STATUSES",
    "PAUSED_PREFIX",
    "WAITING_PREFIX",
    "ActivityHour",
    "AlertDigest",
    "AlertEvent",
    "BulkJob",
    "BulkJobItem",
    "InterruptedPolicy",
    "JobAction",
    "ItemQuerySet",
    "JobCount",
    "JobQuerySet",
    "ProcessorRun",
    "RateBucket",
    "Status",
    "Worker",
]
