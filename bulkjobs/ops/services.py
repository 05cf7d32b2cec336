"""The engine's operations on a job that every caller (views, admin, commands) goes through."""

import logging
import operator
from dataclasses import dataclass, field
from functools import reduce

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from ..engine import recount
from ..kinds import kind_for_job
from ..models import Status

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


@dataclass
class RetryResult:
    """What "Retry failed items" did: how many items were queued again, and how many were
    left failed on purpose (by label, e.g. {"hard bounce": 2}) and why."""

    queued: int
    skipped: dict = field(default_factory=dict)
    why: str = ""

    @property
    def skipped_total(self):
        return sum(self.skipped.values())

    def skipped_text(self):
        """ "3 not retried because their addresses are on the suppression list (2 hard
        bounce, 1 unsubscribed)", or "" when none were left out."""
        if not self.skipped_total:
            return ""
        details = ", ".join(f"{n} {label}" for label, n in self.skipped.items() if n)
        return _("%(count)s not retried because %(why)s (%(details)s)") % {
            "count": self.skipped_total,
            "why": self.why,
            "details": details,
        }


def retry_failed_items(job, by=None):
    """Put a finished job's failed items back to pending and reopen the job; items the
    kind says must not be retried (kind.retry_exclusions: suppressed addresses) stay
    failed. Each item keeps its attempts and attempt_log.

    Returns a RetryResult (queued 0 when there was nothing to retry). Raises ValueError
    for a job that is still running or was cancelled.
    """
    kind = kind_for_job(job)
    why, exclusions = kind.retry_exclusions(job)
    exclude = reduce(operator.or_, (Q(c) for c in exclusions.values())) if exclusions else None
    with transaction.atomic():
        failed = kind.item_model.objects.filter(job_id=job.pk, status=Status.FAILED).order_by()
        counts = failed.aggregate(
            total=Count("pk"),
            **{f"skip{n}": Count("pk", filter=Q(c)) for n, c in enumerate(exclusions.values())},
        )
        skipped = {label: counts[f"skip{n}"] for n, label in enumerate(exclusions)}
        result = RetryResult(0, skipped, why)
        reopened = counts["total"] > result.skipped_total and (
            kind.job_model.objects.reopen_for_retry(job.pk)
        )
        if not reopened:
            job.refresh_from_db()
            if job.status not in RETRYABLE_JOB_STATUSES:
                raise ValueError(
                    f"Job {job.pk} is {job.status}; only completed or failed jobs can be retried."
                )
            return result
        result.queued = kind.item_model.objects.requeue_failed(job.pk, exclude=exclude)
        recount(kind, job.pk)
    job.refresh_from_db()
    logging.getLogger(kind.log_name).info(
        "Job %s: %d failed item(s) queued again by %s; %d left failed",
        job.pk,
        result.queued,
        by or "system",
        result.skipped_total,
    )
    return result


def release_stuck_claim(job):
    """Drop a job's claim so the next run can take it (operator action for a hung run)."""
    kind = kind_for_job(job)
    return kind.job_model.objects.force_release(job.pk)
