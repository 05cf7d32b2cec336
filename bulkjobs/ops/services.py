"""The engine's operations on a job that every caller (views, admin, commands) goes through:
cancel, pause, resume, retry failed items, release a stuck claim. Each records who asked
(an Actor: a person through the app or the admin, or a command) as a JobAction, in the
same transaction as the change."""

import logging
import operator
from dataclasses import dataclass, field
from functools import reduce

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from ..engine import recount
from ..kinds import kind_for_job
from ..models import JobAction, Status

RETRYABLE_JOB_STATUSES = (Status.COMPLETED, Status.FAILED)

# What retry_failed_items() does with the failed items whose outcome is unknown (the
# kind's unknown_outcome(): an email the server may have queued, one interrupted
# mid-delivery). Retrying them may send the email twice, so by default they stay failed;
# a person retries them only as a group of their own, after a confirmation that says so.
#: They stay failed and are counted (RetryResult.unknown_left): "Retry failed items".
LEAVE_UNKNOWN = "leave"
#: Only they are queued again: "Retry items whose delivery is unknown", confirmed.
ONLY_UNKNOWN = "only"
#: They are queued with the others: `manage.py retry_job --include-unknown`.
WITH_UNKNOWN = "include"
UNKNOWN_CHOICES = (LEAVE_UNKNOWN, ONLY_UNKNOWN, WITH_UNKNOWN)


@dataclass(frozen=True)
class Actor:
    """Who asks for an action: a person (through the app or the admin) or a command."""

    via: str
    name: str = ""
    user: object = None

    @classmethod
    def person(cls, user, via=JobAction.Via.APP):
        """A signed-in person; their name as people see it, saved with the action."""
        return cls(via=via, name=user.get_full_name() or user.get_username(), user=user)

    @classmethod
    def command(cls, name):
        """A management command ("pause_job")."""
        return cls(via=JobAction.Via.COMMAND, name=name)

    @classmethod
    def of(cls, by):
        """An Actor from what a caller gave: an Actor, a user (the app), a name, or None."""
        if isinstance(by, Actor):
            return by
        if isinstance(by, AbstractBaseUser):
            return cls.person(by)
        return cls(via=JobAction.Via.OTHER, name=by or "")

    def __str__(self):
        via = {JobAction.Via.ADMIN: "admin ", JobAction.Via.COMMAND: "command "}.get(self.via, "")
        return f"{via}{self.name or 'system'}"

    def record(self, kind, job, action, now, items=None):
        """Note that this actor took `action` on the job (JobAction)."""
        return JobAction.objects.create(
            kind=kind.name,
            job_id=job.pk,
            company_id=job.company_id,
            action=action,
            via=self.via,
            user=self.user,
            name=self.name[:150],
            at=now,
            items=items,
        )


def cancel_job(job, by=None, reason="Cancelled by user"):
    """Cancel a job that is not finished (pending, processing or paused) and its
    unfinished items; `by` (an Actor, a user, a name) is recorded as who did it.

    A batch in flight notices before its next item (its fenced writes stop matching).
    Returns the number of items cancelled, or None if the job was finished already.
    """
    kind = kind_for_job(job)
    actor = Actor.of(by)
    now = timezone.now()
    with transaction.atomic():
        if not kind.job_model.objects.cancel(job.pk, reason, now):
            return None
        cancelled = kind.item_model.objects.cancel_unfinished(job.pk, reason, now)
        recount(kind, job.pk)
        actor.record(kind, job, JobAction.Action.CANCEL, now, items=cancelled)
    job.refresh_from_db()
    logging.getLogger(kind.log_name).info(
        "Job %s cancelled by %s: %d item(s) cancelled", job.pk, actor, cancelled
    )
    return cancelled


def pause_job(job, by=None):
    """Pause a pending or processing job until someone resumes it (resume_job()); `by`
    is recorded as who did it. True if it paused it, False if the job was not active.

    Nothing of it is sent while it is paused and no run claims it, so the company's next
    job goes ahead. A batch in flight stops before its next item and writes the outcome
    of the item in hand (JobQuerySet.pause_on_request()).
    """
    kind = kind_for_job(job)
    actor = Actor.of(by)
    now = timezone.now()
    with transaction.atomic():
        if not kind.job_model.objects.pause_on_request(job.pk):
            job.refresh_from_db()
            return False
        actor.record(kind, job, JobAction.Action.PAUSE, now)
    job.refresh_from_db()
    logging.getLogger(kind.log_name).info("Job %s paused by %s", job.pk, actor)
    return True


def resume_job(job, by=None):
    """Resume a job paused by pause_job(): the next run claims it again and it goes on
    with its pending items. True if it resumed it, False if the job was not paused."""
    kind = kind_for_job(job)
    actor = Actor.of(by)
    now = timezone.now()
    with transaction.atomic():
        if not kind.job_model.objects.resume_on_request(job.pk):
            job.refresh_from_db()
            return False
        actor.record(kind, job, JobAction.Action.RESUME, now)
    job.refresh_from_db()
    logging.getLogger(kind.log_name).info("Job %s resumed by %s", job.pk, actor)
    return True


@dataclass
class RetryResult:
    """What "Retry failed items" did: how many items were queued again, how many were
    left failed on purpose (by label, e.g. {"hard bounce": 2}) and why, and how many of
    those whose delivery is unknown were left failed or queued again."""

    queued: int
    skipped: dict = field(default_factory=dict)
    why: str = ""
    #: Failed items whose delivery is unknown left failed (LEAVE_UNKNOWN) ...
    unknown_left: int = 0
    #: ... or queued again, among `queued` (ONLY_UNKNOWN, WITH_UNKNOWN).
    unknown_queued: int = 0

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

    def unknown_text(self):
        """ "3 items whose delivery is unknown were not retried", or "" when none were."""
        if not self.unknown_left:
            return ""
        return ngettext(
            "%(count)s item whose delivery is unknown was not retried",
            "%(count)s items whose delivery is unknown were not retried",
            self.unknown_left,
        ) % {"count": self.unknown_left}

    def left_failed_text(self):
        """Everything left failed on purpose, in one phrase ("" when nothing was)."""
        return "; ".join(text for text in (self.skipped_text(), self.unknown_text()) if text)


def retry_failed_items(job, by=None, *, unknown=LEAVE_UNKNOWN):
    """Put a finished job's failed items back to pending and reopen the job (`by`, who
    asked, is recorded when items were queued); items the
    kind says must not be retried (kind.retry_exclusions: suppressed addresses) stay
    failed. Each item keeps its attempts and attempt_log.

    Items whose delivery is unknown (kind.unknown_outcome()) stay failed too, unless
    `unknown` says a person confirmed them: ONLY_UNKNOWN queues those alone,
    WITH_UNKNOWN with the others (see LEAVE_UNKNOWN).

    Returns a RetryResult (queued 0 when there was nothing to retry). Raises ValueError
    for a job that is still running or was cancelled.
    """
    if unknown not in UNKNOWN_CHOICES:
        raise ValueError(f"unknown must be one of {', '.join(UNKNOWN_CHOICES)}, got {unknown!r}")
    kind = kind_for_job(job)
    actor = Actor.of(by)
    why, exclusions = kind.retry_exclusions(job)
    exclude = reduce(operator.or_, (Q(c) for c in exclusions.values())) if exclusions else None
    is_unknown = kind.unknown_outcome()
    with transaction.atomic():
        failed = kind.item_model.objects.filter(job_id=job.pk, status=Status.FAILED).order_by()
        if unknown == ONLY_UNKNOWN:
            failed = failed.filter(is_unknown) if is_unknown is not None else failed.none()
        unknown_count = {}
        if is_unknown is not None:
            # A suppressed address is counted (and left failed) as suppressed.
            counted = is_unknown if exclude is None else is_unknown & ~exclude
            unknown_count = {"unknown": Count("pk", filter=counted)}
        counts = failed.aggregate(
            total=Count("pk"),
            **{f"skip{n}": Count("pk", filter=Q(c)) for n, c in enumerate(exclusions.values())},
            **unknown_count,
        )
        skipped = {label: counts[f"skip{n}"] for n, label in enumerate(exclusions)}
        result = RetryResult(0, skipped, why)
        if unknown == LEAVE_UNKNOWN and is_unknown is not None:
            result.unknown_left = counts["unknown"]
            exclude = is_unknown if exclude is None else exclude | is_unknown
        elif unknown == ONLY_UNKNOWN and is_unknown is not None:
            exclude = ~is_unknown if exclude is None else exclude | ~is_unknown
        left = result.skipped_total + result.unknown_left
        reopened = counts["total"] > left and kind.job_model.objects.reopen_for_retry(job.pk)
        if not reopened:
            job.refresh_from_db()
            if job.status not in RETRYABLE_JOB_STATUSES:
                raise ValueError(
                    f"Job {job.pk} is {job.status}; only completed or failed jobs can be retried."
                )
            return result
        result.queued = kind.item_model.objects.requeue_failed(job.pk, exclude=exclude)
        if unknown != LEAVE_UNKNOWN:
            result.unknown_queued = counts.get("unknown", 0)
        recount(kind, job.pk)
        actor.record(kind, job, JobAction.Action.RETRY, timezone.now(), items=result.queued)
    job.refresh_from_db()
    logging.getLogger(kind.log_name).info(
        "Job %s: %d failed item(s) queued again by %s (%d of them with delivery unknown, "
        "confirmed); %d left failed (%d with delivery unknown)",
        job.pk,
        result.queued,
        actor,
        result.unknown_queued,
        result.skipped_total + result.unknown_left,
        result.unknown_left,
    )
    return result


def release_stuck_claim(job, by=None):
    """Drop a job's claim so the next run can take it (operator action for a hung run);
    `by` is recorded as who did it. True if the job was claimed."""
    kind = kind_for_job(job)
    with transaction.atomic():
        released = kind.job_model.objects.force_release(job.pk)
        if released:
            Actor.of(by).record(kind, job, JobAction.Action.RELEASE, timezone.now())
    return released
