"""Jobs: their statuses, and every write of a job's status or claim.

The state machine lives here and in items.py: the named queryset methods are the only
writers of job and item status. Each is a conditional UPDATE whose conditions are listed
in its docstring and whose row count tells the caller whether it won (docs/lifecycle.md
draws them). A concrete kind (emails.BulkEmailJob, wallet.BulkWalletApiJob) subclasses
BulkJob and keeps the original table name.
"""

import enum

from django.conf import settings
from django.db import models
from django.db.models import Case, F, Q, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .. import reasons
from ..reasons import PAUSED_PREFIX, WAITING_PREFIX


class Status(models.TextChoices):
    PENDING = "pending", _("Pending")
    PROCESSING = "processing", _("Processing")
    COMPLETED = "completed", _("Completed")
    FAILED = "failed", _("Failed")
    CANCELLED = "cancelled", _("Cancelled")
    # A job only: paused by a person (or a command) until someone resumes it. Not the
    # provider pause, which keeps a job `processing` with paused_at set.
    PAUSED = "paused", _("Paused")


#: Statuses with work the engine does: claimed, batched, expired when inactive.
ACTIVE_STATUSES = (Status.PENDING, Status.PROCESSING)
#: Statuses of a job that is not finished: the active ones and `paused` (work left, held
#: by a person). What a person may cancel, and what pages count as "not finished".
OPEN_STATUSES = (*ACTIVE_STATUSES, Status.PAUSED)
FINISHED_STATUSES = (Status.COMPLETED, Status.FAILED, Status.CANCELLED)

# PAUSED_PREFIX: the start of a paused job's English reason, then the pause's cause;
# WAITING_PREFIX: that of a job waiting for a rate limit (a short wait, not a pause).
#: Entries an item's attempt_log keeps: the first attempt and the latest ones.
ATTEMPT_LOG_SIZE = 20
#: Longest reason an attempt_log entry keeps (the item's own reason keeps the whole text).
ATTEMPT_REASON_LENGTH = 300


class InterruptedPolicy(enum.StrEnum):
    """What a run does with an item a dead run left `processing`."""

    #: Its side effect may have happened and must not be repeated (email: at most once).
    FAIL = "fail"
    #: Its side effect is idempotent, so it is simply done again (wallet: at least once).
    REDO = "redo"


#: The columns a release writes: no token, no owner.
UNCLAIMED = {"claim_token": None, "claim_owner": None}


def _reason_columns(reason):
    """The reason columns a write sets (bulkjobs.reasons: the English words, the code
    and parameters, the provider's words), from a Reason or a text. The English is cut
    to 1000 characters, as before, however long a provider's reply."""
    columns = reasons.columns(reason)
    columns["reason"] = columns["reason"][:1000]
    return columns


class JobQuerySet(models.QuerySet):
    def active(self):
        """Jobs that still have work: status pending or processing."""
        return self.filter(status__in=ACTIVE_STATUSES)

    def held(self, pk, token):
        """The job row while `token` holds it and it is `processing` (the fence of job writes)."""
        return self.filter(pk=pk, claim_token=token, status=Status.PROCESSING)

    def held_or_paused(self, pk, token):
        """The job row while `token` holds it and it is `processing` or was paused by a
        person during the batch: the fence of what a batch writes about work already done
        (outcomes, counters), so a pause stops the batch without losing them."""
        return self.filter(pk=pk, claim_token=token, status__in=(Status.PROCESSING, Status.PAUSED))

    def claim(self, pk, *, status, previous_token, token, now, owner=None):
        """Claim a job for a run of the worker `owner` (a Worker's id, or None). Conditions:
        its status is still `status` and its claim is still `previous_token` (None:
        unclaimed). It becomes `processing`, held by `token`; a pending job's inactivity
        clock starts now. May raise IntegrityError when another job of the company is
        claimed (the one-claim-per-company index)."""
        changes = {
            "status": Status.PROCESSING,
            "claim_token": token,
            "claim_owner": owner,
            "claimed_at": now,
            "heartbeat_at": now,
            "started_at": Coalesce("started_at", Value(now)),
        }
        if status == Status.PENDING:
            # A fresh start, or a job an operator reset to pending: its inactivity clock
            # starts now, not when it was first created or last touched.
            changes["activity_at"] = now
        else:
            changes["activity_at"] = Coalesce("activity_at", Value(now))
        return bool(self.filter(pk=pk, status=status, claim_token=previous_token).update(**changes))

    def release(self, pk, token):
        """Drop the claim. Condition: `token` still holds the job (any status)."""
        return bool(self.filter(pk=pk, claim_token=token).update(**UNCLAIMED))

    def release_tokens(self, tokens):
        """Drop the claims held with any of `tokens` (a run cut short by a lost database
        connection gives back what it held). Condition: a token still holds its job."""
        return self.filter(claim_token__in=tokens).update(**UNCLAIMED) if tokens else 0

    def release_orphaned(self, pk, token):
        """Drop a claim whose owner is gone (its worker ended, died or stopped
        heartbeating; see bulkjobs/engine/rescue.py). Condition: `token` still holds the
        job."""
        return bool(self.filter(pk=pk, claim_token=token).update(**UNCLAIMED))

    def release_owned_by(self, owner):
        """Drop every claim of a worker that is ending. Condition: `owner` holds it."""
        return self.filter(claim_owner=owner, claim_token__isnull=False).update(**UNCLAIMED)

    def release_all(self):
        """Drop every claim: after a database failover, those from before it belong to no
        live run. Condition: the job is claimed."""
        return self.filter(claim_token__isnull=False).update(**UNCLAIMED)

    def release_stuck(self, pk, token, heartbeat_before):
        """Drop a claim judged stuck. Conditions: `token` still holds the job and its last
        heartbeat is older than `heartbeat_before`."""
        return bool(
            self.filter(pk=pk, claim_token=token, heartbeat_at__lt=heartbeat_before).update(
                **UNCLAIMED
            )
        )

    def force_release(self, pk):
        """Drop whatever claim a job has (an operator's action). Condition: it is claimed."""
        return bool(self.filter(pk=pk, claim_token__isnull=False).update(**UNCLAIMED))

    def heartbeat(self, pk, token, now):
        """Refresh the claim. Conditions: `token` holds the job and it is `processing`."""
        return bool(self.held(pk, token).update(heartbeat_at=now))

    def record_batch(self, pk, token, *, succeeded, failed, now, ends_pause, ends_wait=False):
        """Add a batch's outcomes to the counters and restart the inactivity clock; a batch
        that made progress (`ends_pause`) ends a pause, and one that was not cut short by
        a rate limit (`ends_wait`) clears a "Waiting for" reason. Conditions: `token` holds
        the job and it is `processing`, or `paused` by a person while the batch ran (the
        batch's outcomes are counted all the same)."""
        changes = {
            "succeeded_items": F("succeeded_items") + succeeded,
            "failed_items": F("failed_items") + failed,
            "last_processed_at": now,
            "activity_at": now,
            "heartbeat_at": now,
        }
        if ends_pause:
            changes["paused_at"] = None
        if ends_wait:
            # A wait written by an older release has no code: its English says so.
            waiting = Q(reason_code="waiting") | Q(reason__startswith=WAITING_PREFIX)
            for column in ("reason", "reason_code"):
                changes[column] = Case(
                    When(waiting, then=Value("")),
                    default=F(column),
                    output_field=models.TextField(),
                )
        return bool(self.held_or_paused(pk, token).update(**changes))

    def note_waiting(self, pk, token, reason):
        """Say what the job waits for (a rate limit: a short wait, not a pause; paused_at
        and the clocks are left alone). Conditions: as heartbeat()."""
        return bool(self.held(pk, token).update(**_reason_columns(reason)))

    def pause(self, pk, token, cause, now):
        """Note that the job waits for its provider. Conditions: as heartbeat().

        Returns "started" when this begins a pause (paused_at was empty), "continued"
        when the job was already paused (paused_at is kept), None if the claim was lost.
        """
        reason = _reason_columns(reasons.wrap("paused", cause))
        if self.held(pk, token).filter(paused_at__isnull=True).update(paused_at=now, **reason):
            return "started"
        if self.held(pk, token).update(**reason):
            return "continued"
        return None

    def finish(self, pk, token, *, counts, reason, now):
        """Complete the job with its final counts. Conditions: as heartbeat()."""
        return bool(
            self.held(pk, token).update(
                status=Status.COMPLETED,
                finished_at=now,
                paused_at=None,
                total_items=sum(counts.values()),
                succeeded_items=counts[Status.COMPLETED],
                failed_items=counts[Status.FAILED],
                cancelled_items=counts[Status.CANCELLED],
                **_reason_columns(reason),
            )
        )

    def expire(self, pk, reason, now):
        """Fail a job that cannot go on (inactive, or paused too long). Conditions: it is
        `processing` and unclaimed."""
        return bool(
            self.filter(pk=pk, status=Status.PROCESSING, claim_token__isnull=True).update(
                status=Status.FAILED, finished_at=now, **_reason_columns(reason)
            )
        )

    def cancel(self, pk, reason, now):
        """Cancel a job. Condition: it is not finished (pending, processing or paused)."""
        return bool(
            self.filter(pk=pk, status__in=OPEN_STATUSES).update(
                status=Status.CANCELLED, finished_at=now, paused_at=None, **_reason_columns(reason)
            )
        )

    def pause_on_request(self, pk):
        """Pause a job at a person's request (the app, the admin, `manage.py pause_job`):
        it becomes `paused` until resumed. Condition: it is active (pending or processing).

        A claim is left alone: a batch in flight stops before its next item (marking one
        needs `processing`), writes the outcome of the item in hand (held_or_paused) and
        releases it. A provider pause ends (paused_at, and its reason, cleared): the job
        no longer waits for its provider but for a person, and the provider is tried
        afresh after the resume."""
        return bool(
            self.filter(pk=pk, status__in=ACTIVE_STATUSES).update(
                status=Status.PAUSED, paused_at=None, **_reason_columns("")
            )
        )

    def resume_on_request(self, pk):
        """Resume a job paused by a person: back to `processing` if it had started (its
        pending items are picked up where it stopped), else `pending`. Its inactivity
        clock is emptied, so the paused time does not count: the next claim starts it
        (claim()). Condition: it is `paused`."""
        return bool(
            self.filter(pk=pk, status=Status.PAUSED).update(
                status=Case(
                    When(started_at__isnull=True, then=Value(Status.PENDING)),
                    default=Value(Status.PROCESSING),
                ),
                activity_at=None,
            )
        )

    def settle_cancelled_by_sql(self, pk, now):
        """Close a job cancelled behind the engine's back (the original's cancel SQL):
        note when, and drop any claim left on it. Conditions: it is `cancelled` and
        has no finished_at (the engine's own cancel always sets it)."""
        return bool(
            self.filter(pk=pk, status=Status.CANCELLED, finished_at__isnull=True).update(
                finished_at=now, paused_at=None, **UNCLAIMED
            )
        )

    def reopen_for_retry(self, pk):
        """Put a finished job back to pending to retry its failed items. Conditions: it is
        completed or failed and has failed items."""
        return bool(
            self.filter(
                pk=pk, status__in=(Status.COMPLETED, Status.FAILED), failed_items__gt=0
            ).update(
                status=Status.PENDING,
                finished_at=None,
                activity_at=None,
                paused_at=None,
                **_reason_columns(reasons.Reason("retrying")),
            )
        )

    def begin_prune(self, pk, finished_before, reason):
        """Mark a finished job for deletion (retention), so nobody reopens it while its
        items are deleted in chunks: with no failed items, reopen_for_retry() no longer
        matches it. Conditions: it is finished (completed, failed or cancelled) and
        finished before `finished_before`."""
        return bool(
            self.filter(
                pk=pk, status__in=FINISHED_STATUSES, finished_at__lt=finished_before
            ).update(failed_items=0, **_reason_columns(reason))
        )

    def store_counts(self, pk, counts):
        """Set a job's counters from its items' counts per status (no status change)."""
        return self.filter(pk=pk).update(
            total_items=sum(counts.values()),
            succeeded_items=counts[Status.COMPLETED],
            failed_items=counts[Status.FAILED],
            cancelled_items=counts[Status.CANCELLED],
        )


class BulkJob(models.Model):
    company = models.ForeignKey("cards.Company", on_delete=models.CASCADE, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    # What the job waits for or how it ended, as English words: the original's SQL and
    # older releases read this column, so the engine keeps writing it. People read
    # reason_code and reason_params, rendered in their language (bulkjobs/reasons.py);
    # the provider's own words are kept verbatim in provider_reply. An empty code (rows
    # from before codes) is read from the English by reasons.parse_legacy().
    reason = models.TextField(blank=True, default="")
    reason_code = models.CharField(max_length=64, blank=True, default="", db_default="")
    reason_params = models.JSONField(blank=True, default=dict, db_default={})
    provider_reply = models.TextField(blank=True, default="", db_default="")
    total_items = models.PositiveIntegerField(default=0)
    succeeded_items = models.PositiveIntegerField(default=0)
    failed_items = models.PositiveIntegerField(default=0)
    cancelled_items = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    last_processed_at = models.DateTimeField(null=True, blank=True)
    # When the job began waiting for its provider (mail server unreachable, login
    # refused...); empty while it can work. A paused job is not inactive: it has its own
    # limit (BULKJOBS_PAUSE_LIMIT_HOURS). Cleared when a batch makes progress.
    paused_at = models.DateTimeField(null=True, blank=True)
    # Base of the 30-minute inactivity rule: set when the job starts (or restarts) and
    # whenever a batch attempts an item; moved forward by the length of any gap in
    # which no processor ran, so downtime never expires a job.
    activity_at = models.DateTimeField(null=True, blank=True)
    # The claim: which run holds the job now. claimed_at is kept after release and
    # doubles as "last served" for fair ordering between companies.
    # NULL (not "") means unclaimed: the generated column below depends on it.
    claim_token = models.CharField(max_length=32, null=True, blank=True)  # noqa: DJ001
    # The Worker (bulkjobs.models.Worker) whose run holds the claim; a claim whose owner is
    # gone is released by the next run. Empty for claims of runs without a registration
    # (and of older releases): the stuck rule alone frees those.
    claim_owner = models.BigIntegerField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Equals company_id while the job is claimed, NULL otherwise. A unique index on it
    # is how the database itself guarantees one claimed job per company, on SQLite,
    # PostgreSQL and MariaDB alike (MariaDB has no partial unique indexes).
    claimed_company = models.GeneratedField(
        expression=Case(When(claim_token__isnull=False, then=F("company_id"))),
        output_field=models.BigIntegerField(null=True),
        db_persist=True,
    )

    objects = JobQuerySet.as_manager()

    class Meta:
        abstract = True
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["claimed_company"], name="%(app_label)s_%(class)s_one_claim_per_company"
            ),
        ]
        indexes = [
            # Serves the run's "companies with active jobs" and "oldest active job of a
            # company" queries: WHERE status IN (...) [AND company_id = ?] ORDER BY created_at.
            models.Index(fields=["status", "company", "created_at"], name="%(class)s_active_idx"),
            # Serves the dashboard: WHERE company_id = ? ORDER BY created_at DESC.
            models.Index(fields=["company", "-created_at"], name="%(class)s_company_idx"),
            # Serves the rescue of stale claims: WHERE claim_token IS NOT NULL AND heartbeat_at < ?.
            models.Index(fields=["heartbeat_at"], name="%(class)s_heartbeat_idx"),
            # Serves the rescue's search for jobs cancelled by plain SQL:
            # WHERE status = 'cancelled' AND finished_at IS NULL.
            models.Index(fields=["status", "finished_at"], name="%(class)s_settle_idx"),
        ]

    def __str__(self):
        return f"{self._meta.verbose_name} #{self.pk} ({self.status})"

    @property
    def processed_items(self):
        return self.succeeded_items + self.failed_items + self.cancelled_items

    @property
    def percent_done(self):
        """Share of the items worked on (sent or failed): a cancelled job is not 100 %."""
        if not self.total_items:
            return 0
        handled = self.succeeded_items + self.failed_items
        return min(100, round(100 * handled / self.total_items))

    @property
    def is_active(self):
        return self.status in ACTIVE_STATUSES

    @property
    def is_open(self):
        """Not finished: active, or paused by a person."""
        return self.status in OPEN_STATUSES

    @property
    def is_paused(self):
        """Whether the job waits for its provider (the provider pause; a job a person
        paused has the status `paused` instead)."""
        return self.status == Status.PROCESSING and self.paused_at is not None

    @property
    def pause_cause(self):
        """Why a paused job waits, in English (its reason without the "Paused..." prefix);
        reasons.pause_cause() gives it in the reader's words."""
        return self.reason.removeprefix(PAUSED_PREFIX)
