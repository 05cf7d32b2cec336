"""The engine's operations on a job that every caller (views, admin, commands) goes through."""

import logging

from django.db import transaction
from django.utils import timezone

from .engine import recount
from .kinds import kind_for_job
from .models import ACTIVE_STATUSES, Status

RETRYABLE_JOB_STATUSES = (Status.COMPLETED, Status.FAILED)


def cancel_job(job, by=None, reason="Cancelled by user"):
    """Cancel a pending or processing job and its unfinished items.

    A batch in flight notices before its next item (its fenced writes stop matching).
    Returns the number of items cancelled, or None if the job was not active.
    """
    kind = kind_for_job(job)
    now = timezone.now()
    with transaction.atomic():
        won = kind.job_model.objects.filter(pk=job.pk, status__in=ACTIVE_STATUSES).update(
            status=Status.CANCELLED, reason=reason, finished_at=now
        )
        if not won:
            return None
        cancelled = kind.item_model.objects.filter(
            job_id=job.pk, status__in=ACTIVE_STATUSES
        ).update(status=Status.CANCELLED, reason=reason, processed_at=now)
        recount(kind, job.pk)
    job.refresh_from_db()
    logging.getLogger(kind.log_name).info(
        "Job %s cancelled by %s: %d item(s) cancelled", job.pk, by or "system", cancelled
    )
    return cancelled


def retry_failed_items(job, by=None):
    """Put a finished job's failed items back to pending and reopen the job.

    Returns the number of items queued again (0 when there was nothing to retry).
    Raises ValueError for a job that is still running or was cancelled.
    """
    kind = kind_for_job(job)
    with transaction.atomic():
        reopened = kind.job_model.objects.filter(
            pk=job.pk, status__in=RETRYABLE_JOB_STATUSES, failed_items__gt=0
        ).update(
            status=Status.PENDING,
            reason="Retrying failed items.",
            finished_at=None,
            activity_at=None,
        )
        if not reopened:
            job.refresh_from_db()
            if job.status not in RETRYABLE_JOB_STATUSES:
                raise ValueError(
                    f"Job {job.pk} is {job.status}; only completed or failed jobs can be retried."
                )
            return 0
        count = kind.item_model.objects.filter(job_id=job.pk, status=Status.FAILED).update(
            status=Status.PENDING, attempts=0, next_attempt_at=None, reason="", processed_at=None
        )
        recount(kind, job.pk)
    job.refresh_from_db()
    logging.getLogger(kind.log_name).info(
        "Job %s: %d failed item(s) queued again by %s", job.pk, count, by or "system"
    )
    return count


def release_stuck_claim(job):
    """Drop a job's claim so the next run can take it (operator action for a hung run)."""
    kind = kind_for_job(job)
    return bool(
        kind.job_model.objects.filter(pk=job.pk, claim_token__isnull=False).update(claim_token=None)
    )
