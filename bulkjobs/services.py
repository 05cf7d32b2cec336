"""The engine's operations on a job that every caller (views, admin, commands) goes through."""

import logging

from django.db import transaction
from django.utils import timezone

from .engine import recount
from .kinds import kind_for_job
from .models import Status

RETRYABLE_JOB_STATUSES = (Status.COMPLETED, Status.FAILED)


def cancel_job(job, by=None, reason="Cancelled by user"):
    """Cancel a pending or processing job and its unfinished items.

    A batch in flight notices before its next item (its fenced writes stop matching).
    Returns the number of items cancelled, or None if the job was not active.
    """
    kind = kind_for_job(job)
    now = timezone.now()
    with transaction.atomic():
        if not kind.job_model.objects.cancel(job.pk, reason, now):
            return None
        cancelled = kind.item_model.objects.cancel_unfinished(job.pk, reason, now)
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
        if not kind.job_model.objects.reopen_for_retry(job.pk):
            job.refresh_from_db()
            if job.status not in RETRYABLE_JOB_STATUSES:
                raise ValueError(
                    f"Job {job.pk} is {job.status}; only completed or failed jobs can be retried."
                )
            return 0
        count = kind.item_model.objects.requeue_failed(job.pk)
        recount(kind, job.pk)
    job.refresh_from_db()
    logging.getLogger(kind.log_name).info(
        "Job %s: %d failed item(s) queued again by %s", job.pk, count, by or "system"
    )
    return count


def release_stuck_claim(job):
    """Drop a job's claim so the next run can take it (operator action for a hung run)."""
    kind = kind_for_job(job)
    return kind.job_model.objects.force_release(job.pk)
