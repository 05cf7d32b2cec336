"""Abstract job and item models shared by every job kind, plus the processor run record.

A concrete kind (emails.BulkEmailJob, wallet.BulkWalletApiJob) subclasses BulkJob and
BulkJobItem, keeps the original table names, and gives its items a ForeignKey named
`job` with the original column name.

The state machine lives here, in one place: the named queryset methods below are the
only writers of job and item status. Each is a conditional UPDATE whose conditions are
listed in its docstring and whose row count tells the caller whether it won. Item writes
of a run are fenced by its claim token: they change nothing unless the job is still
`processing` and held by that token.
"""

import enum
import functools

from django.conf import settings
from django.db import connections, models
from django.db.models import Case, Exists, F, Q, Value, When
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _


class Status(models.TextChoices):
    PENDING = "pending", _("Pending")
    PROCESSING = "processing", _("Processing")
    COMPLETED = "completed", _("Completed")
    FAILED = "failed", _("Failed")
    CANCELLED = "cancelled", _("Cancelled")


ACTIVE_STATUSES = (Status.PENDING, Status.PROCESSING)
FINISHED_STATUSES = (Status.COMPLETED, Status.FAILED, Status.CANCELLED)

#: Start of a paused job's reason; what follows is the pause's cause.
PAUSED_PREFIX = "Paused, will retry next run: "
#: Start of the reason of a job waiting for a rate limit (a short wait, not a pause).
WAITING_PREFIX = "Waiting for "
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


class JobQuerySet(models.QuerySet):
    def active(self):
        """Jobs that still have work: status pending or processing."""
        return self.filter(status__in=ACTIVE_STATUSES)

    def held(self, pk, token):
        """The job row while `token` holds it and it is `processing` (the fence of job writes)."""
        return self.filter(pk=pk, claim_token=token, status=Status.PROCESSING)

    def claim(self, pk, *, status, previous_token, token, now):
        """Claim a job for a run. Conditions: its status is still `status` and its claim
        is still `previous_token` (None: unclaimed). It becomes `processing`, held by
        `token`; a pending job's inactivity clock starts now. May raise IntegrityError
        when another job of the company is claimed (the one-claim-per-company index)."""
        changes = {
            "status": Status.PROCESSING,
            "claim_token": token,
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
        return bool(self.filter(pk=pk, claim_token=token).update(claim_token=None))

    def release_tokens(self, tokens):
        """Drop the claims held with any of `tokens` (a run cut short by a lost database
        connection gives back what it held). Condition: a token still holds its job."""
        return self.filter(claim_token__in=tokens).update(claim_token=None) if tokens else 0

    def release_stuck(self, pk, token, heartbeat_before):
        """Drop a claim judged stuck. Conditions: `token` still holds the job and its last
        heartbeat is older than `heartbeat_before`."""
        return bool(
            self.filter(pk=pk, claim_token=token, heartbeat_at__lt=heartbeat_before).update(
                claim_token=None
            )
        )

    def force_release(self, pk):
        """Drop whatever claim a job has (an operator's action). Condition: it is claimed."""
        return bool(self.filter(pk=pk, claim_token__isnull=False).update(claim_token=None))

    def heartbeat(self, pk, token, now):
        """Refresh the claim. Conditions: `token` holds the job and it is `processing`."""
        return bool(self.held(pk, token).update(heartbeat_at=now))

    def record_batch(self, pk, token, *, succeeded, failed, now, ends_pause, ends_wait=False):
        """Add a batch's outcomes to the counters and restart the inactivity clock; a batch
        that made progress (`ends_pause`) ends a pause, and one that was not cut short by
        a rate limit (`ends_wait`) clears a "Waiting for" reason. Conditions: as heartbeat()."""
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
            changes["reason"] = Case(
                When(reason__startswith=WAITING_PREFIX, then=Value("")),
                default=F("reason"),
                output_field=models.TextField(),
            )
        return bool(self.held(pk, token).update(**changes))

    def note_waiting(self, pk, token, reason):
        """Say what the job waits for (a rate limit: a short wait, not a pause; paused_at
        and the clocks are left alone). Conditions: as heartbeat()."""
        return bool(self.held(pk, token).update(reason=reason[:1000]))

    def pause(self, pk, token, cause, now):
        """Note that the job waits for its provider. Conditions: as heartbeat().

        Returns "started" when this begins a pause (paused_at was empty), "continued"
        when the job was already paused (paused_at is kept), None if the claim was lost.
        """
        reason = f"{PAUSED_PREFIX}{cause}"[:1000]
        if self.held(pk, token).filter(paused_at__isnull=True).update(reason=reason, paused_at=now):
            return "started"
        if self.held(pk, token).update(reason=reason):
            return "continued"
        return None

    def finish(self, pk, token, *, counts, reason, now):
        """Complete the job with its final counts. Conditions: as heartbeat()."""
        return bool(
            self.held(pk, token).update(
                status=Status.COMPLETED,
                reason=reason,
                finished_at=now,
                paused_at=None,
                total_items=sum(counts.values()),
                succeeded_items=counts[Status.COMPLETED],
                failed_items=counts[Status.FAILED],
                cancelled_items=counts[Status.CANCELLED],
            )
        )

    def expire(self, pk, reason, now):
        """Fail a job that cannot go on (inactive, or paused too long). Conditions: it is
        `processing` and unclaimed."""
        return bool(
            self.filter(pk=pk, status=Status.PROCESSING, claim_token__isnull=True).update(
                status=Status.FAILED, reason=reason, finished_at=now
            )
        )

    def cancel(self, pk, reason, now):
        """Cancel a job. Condition: it is active (pending or processing)."""
        return bool(
            self.filter(pk=pk, status__in=ACTIVE_STATUSES).update(
                status=Status.CANCELLED, reason=reason, finished_at=now, paused_at=None
            )
        )

    def settle_cancelled_by_sql(self, pk, now):
        """Close a job cancelled behind the engine's back (the original's cancel SQL):
        note when, and drop any claim left on it. Conditions: it is `cancelled` and
        has no finished_at (the engine's own cancel always sets it)."""
        return bool(
            self.filter(pk=pk, status=Status.CANCELLED, finished_at__isnull=True).update(
                finished_at=now, claim_token=None, paused_at=None
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
                reason="Retrying failed items.",
                finished_at=None,
                activity_at=None,
                paused_at=None,
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
            ).update(failed_items=0, reason=reason)
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
    reason = models.TextField(blank=True, default="")
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
    def is_paused(self):
        return self.status == Status.PROCESSING and self.paused_at is not None

    @property
    def pause_cause(self):
        """Why a paused job waits (its reason without the "Paused..." prefix)."""
        return self.reason.removeprefix(PAUSED_PREFIX)


class ItemQuerySet(models.QuerySet):
    def due(self, now):
        """Items a batch may take now: pending, and either never tried or past their backoff."""
        return self.filter(status=Status.PENDING).filter(
            Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
        )

    def waiting(self, now):
        """Items waiting for their backoff: pending with a next attempt after `now`."""
        return self.filter(status=Status.PENDING, next_attempt_at__gt=now)

    def counts(self, job_pk):
        """{status: number of the job's items}, every status present."""
        counts = {status: 0 for status in Status.values}
        rows = self.filter(job_id=job_pk).values("status").annotate(n=models.Count("id"))
        for row in rows.order_by():
            counts[row["status"]] = row["n"]
        return counts

    # Writes of a run, fenced by its claim token (plain SQL, see _fenced_update).

    def mark(self, pk, job_pk, token):
        """pending -> processing, one more attempt, before the item's side effect.
        Conditions: the item is `pending`; the fence. Returns the row count (0 or 1)."""
        return self._fenced_update(
            pk, job_pk, token, Status.PENDING, {"status": Status.PROCESSING}, attempts_delta=1
        )

    def give_back(self, pk, job_pk, token):
        """processing -> pending, the attempt refunded: nothing was done for the item (its
        provider refused the whole batch). Conditions: the item is `processing`; the fence."""
        return self._fenced_update(
            pk, job_pk, token, Status.PROCESSING, {"status": Status.PENDING}, attempts_delta=-1
        )

    def record(self, pk, job_pk, token, changes, now=None):
        """processing -> the outcome's status, with its reason and times (`changes`, from
        bulkjobs.decisions), the attempt noted in its attempt_log by the same UPDATE.
        Conditions: the item is `processing`; the fence."""
        entry = attempt_entry(changes["status"], changes.get("reason", ""), now or timezone.now())
        return self._fenced_update(pk, job_pk, token, Status.PROCESSING, changes, entry=entry)

    def record_and_mark(self, pk, job_pk, token, changes, now, next_pk):
        """record() item `pk` and mark() item `next_pk`, in one UPDATE where the database
        says which rows it changed (UPDATE ... RETURNING: PostgreSQL, SQLite >= 3.35);
        else the two statements in turn, the mark only if the record won. One statement
        (one commit) per item instead of two is a third of what a send costs on a loopback
        relay. The mark still commits before `next_pk`'s side effect, and each row keeps
        its own conditions. Returns (recorded, marked)."""
        connection = connections[self.db]
        if not _can_return_from_update(connection):
            if not self.record(pk, job_pk, token, changes, now):
                return False, False
            return True, bool(self.mark(next_pk, job_pk, token))
        fields = [self.model._meta.get_field(name) for name in changes]
        columns = tuple(f.column for f in fields)
        sql = _record_and_mark_sql(self.model, self.db, columns)
        params = []
        for column, field, value in zip(columns, fields, changes.values(), strict=True):
            params += [pk, field.get_db_prep_save(value, connection)]
            if column == "status":
                params.append(Status.PROCESSING)
        params.append(next_pk)
        params += [pk, *attempt_entry(changes["status"], changes.get("reason", ""), now)]
        params += [pk, Status.PROCESSING, next_pk, Status.PENDING, job_pk, token]
        params.append(Status.PROCESSING)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            changed = {row[0] for row in cursor.fetchall()}
        return pk in changed, next_pk in changed

    def settle_interrupted(self, job_pk, token, policy, reason, now):
        """Settle items a dead run left `processing`, by the kind's policy: FAIL -> failed
        with `reason`, REDO -> pending, due now. Conditions: the item is `processing`;
        the fence (so a run that lost its claim cannot settle a live run's item)."""
        job_model = self.model._meta.get_field("job").related_model
        fence = Exists(job_model.objects.held(job_pk, token))
        interrupted = self.filter(fence, job_id=job_pk, status=Status.PROCESSING)
        if policy == InterruptedPolicy.REDO:
            return interrupted.update(
                status=Status.PENDING,
                next_attempt_at=None,
                attempt_log=self.logged_attempt(Status.PENDING, "Interrupted; done again", now),
            )
        return interrupted.update(
            status=Status.FAILED,
            reason=reason,
            processed_at=now,
            attempt_log=self.logged_attempt(Status.FAILED, reason, now),
        )

    # Writes that follow a job's own transition, in the same transaction.

    def fail_unfinished(self, job_pk, reason, now, interrupted_reason=None):
        """Fail the active items of a job that expired. Items found `processing` get
        `interrupted_reason` if given (delivery unknown). Condition: the job is `failed`."""
        job_model = self.model._meta.get_field("job").related_model
        fence = Exists(job_model.objects.filter(pk=job_pk, status=Status.FAILED))
        items = self.filter(fence, job_id=job_pk)
        count = 0
        if interrupted_reason:
            count += items.filter(status=Status.PROCESSING).update(
                status=Status.FAILED,
                reason=interrupted_reason,
                processed_at=now,
                attempt_log=self.logged_attempt(Status.FAILED, interrupted_reason, now),
            )
        return count + items.filter(status__in=ACTIVE_STATUSES).update(
            status=Status.FAILED, reason=reason, processed_at=now
        )

    def cancel_unfinished(self, job_pk, reason, now):
        """Cancel the active items of a cancelled job. Condition: the job is `cancelled`."""
        job_model = self.model._meta.get_field("job").related_model
        fence = Exists(job_model.objects.filter(pk=job_pk, status=Status.CANCELLED))
        return self.filter(fence, job_id=job_pk, status__in=ACTIVE_STATUSES).update(
            status=Status.CANCELLED, reason=reason, processed_at=now
        )

    def requeue_failed(self, job_pk, exclude=None):
        """failed -> pending with a fresh round of attempts, for a job reopened by retry;
        the attempts so far and their attempt_log are kept. Items matching `exclude` (a
        Q, e.g. suppressed addresses) stay failed. Condition: the job is `pending`
        (reopen_for_retry ran)."""
        job_model = self.model._meta.get_field("job").related_model
        fence = Exists(job_model.objects.filter(pk=job_pk, status=Status.PENDING))
        items = self.filter(fence, job_id=job_pk, status=Status.FAILED)
        if exclude is not None:
            items = items.exclude(exclude)
        return items.update(
            status=Status.PENDING,
            attempts_before_retry=F("attempts"),
            next_attempt_at=None,
            reason="",
            processed_at=None,
        )

    def logged_attempt(self, status, reason, now):
        """An expression for UPDATE ... SET attempt_log = ...: the log with one more entry
        (see attempt_log_sql), for the bulk writers."""
        sql = attempt_log_sql(connections[self.db].vendor)
        # The SQL is fixed text per database; the entry's values are parameters.
        return RawSQL(sql, attempt_entry(status, reason, now), output_field=models.JSONField())  # noqa: S611

    def _fenced_update(
        self, pk, job_pk, token, expected_status, changes, attempts_delta=0, entry=None
    ):
        """UPDATE one item if it has `expected_status` and `token` holds its `processing` job;
        with `entry` (attempt_entry()), the attempt is appended to its attempt_log.

        Written as plain SQL because building the equivalent ORM query per item cost
        ~2 ms, more than an email's send. Values go through each field's
        get_db_prep_save, so every backend gets what Django would give it.
        """
        connection = connections[self.db]
        fields = [self.model._meta.get_field(name) for name in changes]
        sql = _fenced_update_sql(
            self.model,
            self.db,
            tuple(f.column for f in fields),
            bool(attempts_delta),
            entry is not None,
        )
        params = [
            f.get_db_prep_save(v, connection) for f, v in zip(fields, changes.values(), strict=True)
        ]
        if attempts_delta:
            params.append(attempts_delta)
        if entry is not None:
            params += entry
        params += [pk, expected_status, job_pk, token, Status.PROCESSING]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.rowcount


def attempt_entry(status, reason, now):
    """The parameters of one attempt_log entry: when, the status it left, the reason."""
    return [now.isoformat(), str(status), (reason or "")[:ATTEMPT_REASON_LENGTH]]


@functools.cache
def attempt_log_sql(vendor):
    """SQL for `attempt_log` with one more entry {"n": attempts, "at", "status", "reason"}
    (three parameters, attempt_entry()), dropping the second-oldest entry once the log
    holds ATTEMPT_LOG_SIZE: the first attempt's error is what a person asks about, the
    latest ones say where things stand. `n` is the row's `attempts`, the attempt's
    number. One expression per database, so the outcome and its log entry are written by
    one UPDATE; no read-modify-write of the log is needed."""
    quote = "`" if vendor == "mysql" else '"'
    log, n, size = f"{quote}attempt_log{quote}", f"{quote}attempts{quote}", ATTEMPT_LOG_SIZE
    if vendor == "postgresql":
        return (
            f"(CASE WHEN jsonb_array_length({log}) >= {size} THEN {log} - 1 ELSE {log} END)"
            f" || jsonb_build_array(jsonb_build_object('n', {n}, 'at', %s::text,"
            " 'status', %s::text, 'reason', %s::text))"
        )
    if vendor == "mysql":
        return (
            f"JSON_ARRAY_APPEND(IF(JSON_LENGTH({log}) >= {size}, JSON_REMOVE({log}, '$[1]'),"
            f" {log}), '$', JSON_OBJECT('n', {n}, 'at', %s, 'status', %s, 'reason', %s))"
        )
    return (
        f"json_insert(CASE WHEN json_array_length({log}) >= {size}"
        f" THEN json_remove({log}, '$[1]') ELSE {log} END, '$[#]',"
        f" json_object('n', {n}, 'at', %s, 'status', %s, 'reason', %s))"
    )


@functools.lru_cache(maxsize=64)
def _fenced_update_sql(item_model, alias, columns, with_attempts, with_entry=False):
    """The SQL of ItemQuerySet._fenced_update for one set of columns (built once, reused)."""
    item_meta = item_model._meta
    connection = connections[alias]
    qn = connection.ops.quote_name
    sets = [f"{qn(column)} = %s" for column in columns]
    if with_attempts:
        sets.append(f"{qn('attempts')} = {qn('attempts')} + %s")
    if with_entry:
        sets.append(f"{qn('attempt_log')} = {attempt_log_sql(connection.vendor)}")
    # Identifiers come from model metadata through quote_name; values are parameters.
    return (
        f"UPDATE {qn(item_meta.db_table)} SET {', '.join(sets)} "  # noqa: S608
        f"WHERE {qn(item_meta.pk.column)} = %s AND {qn('status')} = %s "
        f"AND {_fence_sql(item_model, qn)}"
    )


def _fence_sql(item_model, qn):
    """The claim fence of the fenced item writes: the job (three parameters: its id, the
    token, `processing`) is held by the token and running.

    An uncorrelated EXISTS: databases evaluate it once and then reach the items by their
    primary key. (A `job_id IN (SELECT ...)` fence let PostgreSQL scan all of the job's
    items through the job_id index when its statistics were stale.)"""
    job_meta = item_model._meta.get_field("job").related_model._meta
    return (
        f"EXISTS (SELECT 1 FROM {qn(job_meta.db_table)} "  # noqa: S608
        f"WHERE {qn(job_meta.pk.column)} = %s AND {qn('claim_token')} = %s "
        f"AND {qn('status')} = %s)"
    )


def _can_return_from_update(connection):
    """Whether UPDATE ... RETURNING works: PostgreSQL, and SQLite from 3.35 (the version
    that brought RETURNING to INSERT too); not MariaDB/MySQL."""
    if connection.vendor == "sqlite":
        return connection.features.can_return_columns_from_insert
    return connection.vendor == "postgresql"


@functools.lru_cache(maxsize=64)
def _record_and_mark_sql(item_model, alias, columns):
    """The SQL of ItemQuerySet.record_and_mark for one set of outcome columns: each SET is
    a CASE on the primary key, so the recorded row gets its outcome and the marked row
    becomes `processing` with one more attempt; RETURNING says which rows matched."""
    item_meta = item_model._meta
    connection = connections[alias]
    qn = connection.ops.quote_name
    pk = qn(item_meta.pk.column)
    sets = []
    for column in columns:
        # The marked row becomes `processing`; its other columns are left as they are.
        otherwise = "%s" if column == "status" else qn(column)
        sets.append(f"{qn(column)} = CASE WHEN {pk} = %s THEN %s ELSE {otherwise} END")
    attempts, log = qn("attempts"), qn("attempt_log")
    sets.append(f"{attempts} = CASE WHEN {pk} = %s THEN {attempts} + 1 ELSE {attempts} END")
    entry = attempt_log_sql(connection.vendor)
    sets.append(f"{log} = CASE WHEN {pk} = %s THEN {entry} ELSE {log} END")
    # Identifiers come from model metadata through quote_name; values are parameters.
    return (
        f"UPDATE {qn(item_meta.db_table)} SET {', '.join(sets)} "  # noqa: S608
        f"WHERE (({pk} = %s AND {qn('status')} = %s) OR ({pk} = %s AND {qn('status')} = %s)) "
        f"AND {_fence_sql(item_model, qn)} RETURNING {pk}"
    )


class BulkJobItem(models.Model):
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    reason = models.TextField(blank=True, default="")
    # Every attempt ever made, retries by a person included: a retry does not reset it.
    attempts = models.PositiveSmallIntegerField(default=0)
    # `attempts` when a person last retried the item: the engine's retry limit and
    # backoff count only the attempts since (see attempts_this_round).
    attempts_before_retry = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    # One entry per attempt's outcome, {"n", "at", "status", "reason"}, appended by the
    # same UPDATE that writes the outcome (see attempt_log_sql); bounded to
    # ATTEMPT_LOG_SIZE entries, keeping the first (the original error) and the latest.
    attempt_log = models.JSONField(default=list, blank=True)

    objects = ItemQuerySet.as_manager()

    class Meta:
        abstract = True
        ordering = ["id"]
        indexes = [
            # Serves the batch query (WHERE job_id = ? AND status = 'pending' ORDER BY id),
            # "anything left?", the per-status counts, and the claim's EXISTS per job
            # (an item processing / due / waiting: WHERE job_id = ? AND status = ?).
            models.Index(fields=["job", "status", "id"], name="%(class)s_batch_idx"),
        ]

    def __str__(self):
        return f"{self._meta.verbose_name} #{self.pk} ({self.status})"

    @property
    def attempts_this_round(self):
        """Attempts since the item was last retried by a person (what the retry limit counts)."""
        return self.attempts - self.attempts_before_retry

    @property
    def attempt_history(self):
        """The attempt_log for people: dicts of n, at (a datetime), outcome (words) and
        reason, with `gap_before` set where older entries were dropped to bound the log."""
        # gettext here, not at import: the words follow the language of the page asking.
        words = {
            Status.COMPLETED: gettext("succeeded"),
            Status.FAILED: gettext("failed"),
            Status.PENDING: gettext("to retry"),
            Status.CANCELLED: gettext("cancelled"),
        }
        history, previous = [], 0
        for entry in self.attempt_log or []:
            n = entry.get("n") or previous + 1
            history.append(
                {
                    "n": n,
                    "at": parse_datetime(entry.get("at") or ""),
                    "outcome": words.get(entry.get("status"), entry.get("status", "")),
                    "reason": entry.get("reason", ""),
                    "gap_before": n > previous + 1 and bool(history),
                }
            )
            previous = n
        return history


class ProcessorRun(models.Model):
    """When each kind's processing command last ran; shown on the dashboard's health line."""

    kind = models.CharField(max_length=30, unique=True)
    last_started_at = models.DateTimeField()
    # Seconds between the starts of consecutive runs (cron: about 60; workers looping:
    # less), smoothed over the last runs; the schedule behind a job's "time left".
    # Gaps longer than BULKJOBS_RUN_GAP_SECONDS (no processor running) are left out.
    interval_seconds = models.FloatField(null=True, blank=True)
    last_finished_at = models.DateTimeField(null=True, blank=True)
    last_summary = models.CharField(max_length=300, blank=True)
    # Companies with active jobs of this kind (all tenants) when the last run finished:
    # they share the runs, so it feeds a job's "time left". Counted once per run by the
    # run's closing UPDATE, so the dashboard's polls never count other tenants' jobs.
    companies_with_work = models.PositiveIntegerField(null=True, blank=True)

    def __str__(self):
        return f"{self.kind} last ran {self.last_started_at:%Y-%m-%d %H:%M:%S}"


class RateBucket(models.Model):
    """One shared rate limit (a company's pace, a provider's quota); see bulkjobs/engine/ratelimit.py.

    `tat` is the bucket's theoretical arrival time in Unix seconds: the moment by which
    every token taken so far has been paid for at the limit's rate.
    """

    key = models.CharField(max_length=100, unique=True)
    tat = models.FloatField(default=0.0)

    def __str__(self):
        return self.key


class AlertEvent(models.Model):
    """An event someone was (or will be, in the daily digest) told about; see bulkjobs/ops/alerts.py.

    The unique constraint is what makes an alert go out once: every process that sees
    the event tries to insert its row, and only the one whose insert succeeds sends.
    """

    class Event(models.TextChoices):
        JOB_FAILURES = "job_failures", "Job finished with failures"
        JOB_EXPIRED = "job_expired", "Job expired"
        JOB_PAUSED = "job_paused", "Job paused too long"
        PROCESSOR_STALE = "processor_stale", "Processor not running"

    event = models.CharField(max_length=20, choices=Event.choices)
    #: The job kind (email, wallet) of the job, or the processor that stopped.
    source = models.CharField(max_length=30)
    #: The job's id; 0 for a processor.
    object_id = models.BigIntegerField(default=0)
    #: When it happened: the job's finished_at or paused_at, the processor's last start
    #: (so a processor that stops again after running is a new event).
    occurred_at = models.DateTimeField()
    company = models.ForeignKey(
        "cards.Company", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    #: One line for people (no email addresses: it goes to logs and webhooks too).
    text = models.CharField(max_length=500)
    created_at = models.DateTimeField(default=timezone.now)
    #: When its email (or the digest listing it) went out; empty while it waits for
    #: the digest.
    notified_at = models.DateTimeField(null=True, blank=True)
    #: Why its email could not be sent (it is not retried: better one alert lost than
    #: the same alert repeated every minute while the mail server misbehaves).
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        constraints = [
            # Its index also serves the runs' "alerted already?" lookups, which know the
            # source and object: WHERE source = ? AND object_id = ? [AND event = ? ...].
            models.UniqueConstraint(
                fields=["source", "object_id", "event", "occurred_at"], name="alert_once_per_event"
            ),
        ]
        indexes = [
            # Serves the digest: WHERE notified_at IS NULL AND created_at < ?.
            models.Index(fields=["notified_at", "created_at"], name="alert_digest_idx"),
        ]

    def __str__(self):
        return self.text


class AlertDigest(models.Model):
    """A daily digest sent to one user; unique per user and day, so it goes out once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    sent_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "day"], name="alert_digest_once_per_day"),
        ]

    def __str__(self):
        return f"digest for user {self.user_id} on {self.day}"


class ActivityHour(models.Model):
    """Items a company's batches finished per kind and hour (UTC, the hour's start).

    The source of the activity charts and summary numbers, and of the measured time per
    item behind "time left": reading a month of it is at most 744 rows per kind, however
    many jobs and items there are. Written by one upsert per batch
    (bulkjobs.web.activity.record_batch_activity).
    """

    company = models.ForeignKey("cards.Company", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=30)
    hour = models.DateTimeField()
    #: items that reached an outcome (succeeded or failed)
    processed = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    #: attempts made, retries to come included
    attempts = models.PositiveIntegerField(default=0)
    #: wall-clock seconds the batches spent working on these attempts
    busy_seconds = models.FloatField(default=0.0)

    class Meta:
        db_table = "bulkjobs_activity_hour"
        constraints = [
            # The upsert's conflict target; also serves the charts' query:
            # WHERE company_id = ? AND hour >= ? (both kinds).
            models.UniqueConstraint(
                fields=["company", "kind", "hour"], name="activity_hour_one_row_per_hour"
            ),
        ]

    def __str__(self):
        return f"{self.kind} {self.hour:%Y-%m-%d %H:00}: {self.processed} processed"


class JobCount(models.Model):
    """How many jobs of a kind a company has, and a version that moves whenever one of
    them is created or deleted.

    The dashboard's paginator count and the finished-jobs part of its ETag, without a
    COUNT(*) over a company's 100,000 jobs on every poll. Kept by bulkjobs.web.jobcounts
    (signal receivers connected when a kind registers); a missing row is filled in from
    a real COUNT the first time it is needed.
    """

    company = models.ForeignKey("cards.Company", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=30)
    # Signed, so a delete that somehow outran its create can never fail the delete.
    jobs = models.IntegerField(default=0)
    version = models.BigIntegerField(default=0)

    class Meta:
        db_table = "bulkjobs_job_count"
        constraints = [
            models.UniqueConstraint(fields=["company", "kind"], name="job_count_one_row_per_kind"),
        ]

    def __str__(self):
        return f"{self.kind} jobs of company {self.company_id}: {self.jobs}"
