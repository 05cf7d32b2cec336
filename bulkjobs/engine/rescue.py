"""Rescue, the first step of every run: what no live run will finish by itself.

Three steps, each a compare-and-set per job so that runs rescuing at the same moment
never both act on one job:
1. release stale claims: those whose worker is gone (its row removed, or no heartbeat for
   WORKER_TIMEOUT_SECONDS: bulkjobs/engine/workers.py), and those without a heartbeat of
   their own for STUCK_MINUTES (a run hung inside a live process);
2. expire stalled jobs: unclaimed and running, with no progress for INACTIVE_MINUTES of
   their own activity (time spent waiting while the company's other jobs took their
   turns, or for its items' retry time, does not count), or paused for their provider longer than PAUSE_LIMIT_HOURS
   (a job a person paused is neither: its status is `paused`, and resuming it starts
   its inactivity clock afresh);
3. settle jobs cancelled by plain SQL (the original's cancel statement), which leaves
   the counters and any claim as they were.
"""

from datetime import timedelta

from django.db import transaction
from django.db.models import Exists, OuterRef, Q

from .. import conf, reasons
from ..models import ACTIVE_STATUSES, FINISHED_STATUSES, InterruptedPolicy, Status, Worker
from . import clock, locks
from .summary import recount


def rescue(kind, summary):
    """Run the three steps; adds what they did to the run's summary."""
    now = clock.now()
    summary.claims_released += release_stale_claims(kind, now)
    stalled, cancelled = jobs_to_settle(kind, now)
    summary.jobs_expired += expire_stalled_jobs(kind, stalled, now)
    settle_jobs_cancelled_by_sql(kind, cancelled, now)


def release_stale_claims(kind, now):
    """Drop the claims whose worker is gone, and those whose own heartbeat is older than
    STUCK_MINUTES. Returns how many. One query finds them."""
    jobs = kind.job_model.objects
    stuck_minutes = conf.get("STUCK_MINUTES")
    stuck_before = now - timedelta(minutes=stuck_minutes)
    timeout = conf.get("WORKER_TIMEOUT_SECONDS")
    owner_alive = Worker.objects.filter(
        pk=OuterRef("claim_owner"), heartbeat_at__gte=now - timedelta(seconds=timeout)
    )
    orphaned = Q(claim_owner__isnull=False) & ~Exists(owner_alive)
    # claimed_company is NOT NULL exactly while a claim is held: its unique index finds
    # the few claimed jobs among all of them.
    stale = jobs.filter(claimed_company__isnull=False).filter(
        Q(heartbeat_at__lt=stuck_before) | orphaned
    )
    released = 0
    for job_id, token, heartbeat_at in stale.values_list("pk", "claim_token", "heartbeat_at"):
        with locks.skip_if_locked(kind, job_id, "its stale claim is released by a later run"):
            if heartbeat_at is not None and heartbeat_at < stuck_before:
                if jobs.release_stuck(job_id, token, stuck_before):
                    released += 1
                    kind.logger.warning(
                        "Job %s: claim released, no heartbeat for %g minutes (stuck)",
                        job_id,
                        stuck_minutes,
                    )
            elif jobs.release_orphaned(job_id, token):
                released += 1
                kind.logger.warning(
                    "Job %s: claim released, the worker holding it is gone (no heartbeat "
                    "for %g s, or it ended)",
                    job_id,
                    timeout,
                )
    return released


def jobs_to_settle(kind, now):
    """The unclaimed running jobs past a limit, and the jobs cancelled by plain SQL: two
    lists of jobs (pk, status, reason, paused_at), found by one query."""
    inactive_before = now - timedelta(minutes=conf.get("INACTIVE_MINUTES"))
    paused_before = now - timedelta(hours=conf.get("PAUSE_LIMIT_HOURS"))
    running = Q(status=Status.PROCESSING, claim_token__isnull=True)
    # Inactive: could work but made no progress. A paused job waits for its provider
    # instead, and has its own limit; a job paused by a person is not `processing` at all.
    # A job waiting for its turn is not inactive either: the company's jobs take turns
    # batch by batch (claim.turn_order()), so while another of its jobs was served within
    # the limit (or finished within it: the job is next), its time counts as queued, as a
    # pending job's does.
    siblings = kind.job_model.objects.filter(company_id=OuterRef("company_id")).exclude(
        pk=OuterRef("pk")
    )
    company_busy = Exists(
        siblings.filter(status__in=ACTIVE_STATUSES, claimed_at__gte=inactive_before)
    ) | Exists(siblings.filter(status__in=FINISHED_STATUSES, finished_at__gte=inactive_before))
    # A job whose emails wait for their retry (a greylist, a full mailbox: the schedule
    # spans a day) is not inactive either, as long as every pending item of it is still
    # waiting or became due within the limit: its clock runs from its items' retry time.
    pending = kind.item_model.objects.filter(job_id=OuterRef("pk"), status=Status.PENDING)
    waiting_for_retry = Exists(pending.filter(next_attempt_at__gte=inactive_before)) & ~Exists(
        pending.filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lt=inactive_before))
    )
    inactive = (
        running
        & Q(paused_at__isnull=True, activity_at__lt=inactive_before)
        & ~company_busy
        & ~waiting_for_retry
    )
    paused_too_long = running & Q(paused_at__lt=paused_before)
    # The engine's own cancel sets finished_at; the original's cancel SQL does not.
    cancelled_by_sql = Q(status=Status.CANCELLED, finished_at__isnull=True)
    jobs = kind.job_model.objects.filter(inactive | paused_too_long | cancelled_by_sql)
    stalled, cancelled = [], []
    fields = ("pk", "status", "reason", "reason_code", "reason_params", "provider_reply")
    for job in jobs.only(*fields, "paused_at"):
        (cancelled if job.status == Status.CANCELLED else stalled).append(job)
    return stalled, cancelled


def expire_stalled_jobs(kind, jobs, now):
    """Fail the stalled jobs (jobs_to_settle()) and their unfinished items, each with why.
    Returns how many it failed."""
    expired = 0
    for job in jobs:
        with locks.skip_if_locked(kind, job.pk, "it is expired by a later run"):
            if job.paused_at is not None:
                hours = conf.get("PAUSE_LIMIT_HOURS")
                cause = reasons.cause(reasons.of(job))
                reason = reasons.wrap("expired_paused", cause, hours=hours)
                expired += expire(kind, job.pk, reason, now)
            else:
                idle = {"minutes": conf.get("INACTIVE_MINUTES")}
                expired += expire(
                    kind,
                    job.pk,
                    reasons.Reason("expired_inactive", idle),
                    now,
                    reasons.Reason("job_expired", idle),
                )
    return expired


def expire(kind, job_pk, reason, now, items_reason=None):
    """Fail an unclaimed running job and its unfinished items. True if it did."""
    with transaction.atomic():
        if not kind.job_model.objects.expire(job_pk, reason, now):
            return False
        interrupted_reason = (
            kind.interrupted_reason if kind.interrupted_policy == InterruptedPolicy.FAIL else None
        )
        kind.item_model.objects.fail_unfinished(
            job_pk, items_reason or reason, now, interrupted_reason
        )
        recount(kind, job_pk)
    kind.logger.error("Job %s: %s", job_pk, reason)
    return True


def settle_jobs_cancelled_by_sql(kind, jobs, now):
    """Recount the counters of jobs cancelled by plain SQL (jobs_to_settle()) from their
    items and drop their claims. Returns how many it settled."""
    settled = 0
    for job in jobs:
        with locks.skip_if_locked(kind, job.pk, "it is settled by a later run") as guard:
            with transaction.atomic():
                if not kind.job_model.objects.settle_cancelled_by_sql(job.pk, now):
                    continue
                counts = recount(kind, job.pk)
        if guard.skipped:
            continue
        settled += 1
        kind.logger.info(
            "Job %s: cancelled outside the app; counters recounted (%d cancelled item(s))",
            job.pk,
            counts[Status.CANCELLED],
        )
    return settled
