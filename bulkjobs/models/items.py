"""Items: every write of an item's status, most of them fenced by the run's claim.

A concrete kind subclasses BulkJobItem, keeps the original table name, and gives its
items a ForeignKey named `job` with the original column name. Item writes of a run are
fenced by its claim token: they change nothing unless the job is still `processing` and
held by that token. The hot ones are plain SQL (sql.py).
"""

from django.db import connections, models
from django.db.models import Exists, F, Q
from django.db.models.expressions import RawSQL
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext

from .. import reasons
from . import sql
from .jobs import ACTIVE_STATUSES, InterruptedPolicy, Status

# The job statuses the claim fence of a run's item writes accepts (sql._fence_sql): an
# item is marked (before its side effect) only while its job is running; the outcome of
# an item already in hand is written, or an item not sent given back, while the job is
# running or was paused by a person meanwhile. A pause thus stops a batch before its next
# item, like a cancel, without leaving the item in hand `processing` (which the next
# claim would settle as interrupted: for an email, "delivery unknown").
MARK_FENCE = (Status.PROCESSING, Status.PROCESSING)
OUTCOME_FENCE = (Status.PROCESSING, Status.PAUSED)


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
            pk,
            job_pk,
            token,
            Status.PENDING,
            {"status": Status.PROCESSING},
            attempts_delta=1,
            fence=MARK_FENCE,
        )

    def give_back(self, pk, job_pk, token):
        """processing -> pending, the attempt refunded: nothing was done for the item (its
        provider refused the whole batch). Conditions: the item is `processing`; the fence
        (the job running, or paused by a person meanwhile)."""
        return self._fenced_update(
            pk, job_pk, token, Status.PROCESSING, {"status": Status.PENDING}, attempts_delta=-1
        )

    def record(self, pk, job_pk, token, changes, now=None):
        """processing -> the outcome's status, with its reason and times (`changes`, from
        bulkjobs.decisions), the attempt noted in its attempt_log by the same UPDATE.
        Conditions: the item is `processing`; the fence (the job running, or paused by a
        person while the item was in hand: its outcome is known and is kept)."""
        entry = sql.attempt_entry(
            changes["status"], changes.get("reason", ""), now or timezone.now()
        )
        return self._fenced_update(pk, job_pk, token, Status.PROCESSING, changes, entry=entry)

    def record_and_mark(self, pk, job_pk, token, changes, now, next_pk):
        """record() item `pk` and mark() item `next_pk`, in one UPDATE where the database
        says which rows it changed (UPDATE ... RETURNING: PostgreSQL, SQLite >= 3.35);
        else the two statements in turn, the mark only if the record won. One statement
        (one commit) per item instead of two is a third of what a send costs on a loopback
        relay. The mark still commits before `next_pk`'s side effect, and each row keeps
        its own conditions. Returns (recorded, marked)."""
        connection = connections[self.db]
        if not sql.can_return_from_update(connection):
            if not self.record(pk, job_pk, token, changes, now):
                return False, False
            return True, bool(self.mark(next_pk, job_pk, token))
        fields = [self.model._meta.get_field(name) for name in changes]
        columns = tuple(f.column for f in fields)
        statement = sql.record_and_mark_sql(self.model, self.db, columns)
        params = []
        for column, field, value in zip(columns, fields, changes.values(), strict=True):
            params += [pk, field.get_db_prep_save(value, connection)]
            if column == "status":
                params.append(Status.PROCESSING)
        params.append(next_pk)
        params += [pk, *sql.attempt_entry(changes["status"], changes.get("reason", ""), now)]
        params += [pk, Status.PROCESSING, job_pk, token, *OUTCOME_FENCE]
        params += [next_pk, Status.PENDING, job_pk, token, *MARK_FENCE]
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
            changed = {row[0] for row in cursor.fetchall()}
        return pk in changed, next_pk in changed

    def record_and_mark_many(self, job_pk, token, records, marks):
        """record() each of `records` ((pk, changes, now) triples) and mark() each item of
        `marks` (ids), for a lane that marks several items ahead (BULKJOBS_MARK_AHEAD).
        One item of each at most: record_and_mark(), record() or mark(), the statements
        of marking one item at a time. More: one UPDATE where the database says which
        rows it changed (UPDATE ... RETURNING); else each outcome in turn, then the marks
        in one UPDATE, only if every outcome was written. Each row keeps its own
        conditions. Returns (the ids recorded, the ids marked), as sets."""
        if len(records) <= 1 and len(marks) <= 1:
            return self._record_and_mark_one(job_pk, token, records, marks)
        connection = connections[self.db]
        if not sql.can_return_from_update(connection):
            recorded = {
                pk for pk, changes, now in records if self.record(pk, job_pk, token, changes, now)
            }
            if len(recorded) < len(records):
                return recorded, set()
            return recorded, self._mark_many(job_pk, token, marks)
        meta = self.model._meta
        prepared = []
        for pk, changes, now in records:
            values = {}
            for name, value in changes.items():
                field = meta.get_field(name)
                values[field.column] = field.get_db_prep_save(value, connection)
            entry = sql.attempt_entry(changes["status"], changes.get("reason", ""), now)
            prepared.append((pk, values, entry))
        shapes = tuple(tuple(sorted(values)) for _, values, _ in prepared)
        statement, columns = sql.record_and_mark_many_sql(self.model, self.db, shapes, len(marks))
        params = []
        for column in columns:
            for pk, values, _ in prepared:
                if column in values:
                    params += [pk, values[column]]
            if column == "status" and marks:
                params.append(Status.PROCESSING)
        params += marks
        for pk, _, entry in prepared:
            params += [pk, *entry]
        recorded_pks = [pk for pk, _, _ in prepared]
        if recorded_pks:
            params += [*recorded_pks, Status.PROCESSING, job_pk, token, *OUTCOME_FENCE]
        if marks:
            params += [*marks, Status.PENDING, job_pk, token, *MARK_FENCE]
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
            changed = {row[0] for row in cursor.fetchall()}
        return changed & set(recorded_pks), changed & set(marks)

    def _record_and_mark_one(self, job_pk, token, records, marks):
        """record_and_mark_many() for at most one outcome and one mark."""
        if records and marks:
            (pk, changes, now), next_pk = records[0], marks[0]
            recorded, marked = self.record_and_mark(pk, job_pk, token, changes, now, next_pk)
            return {pk} if recorded else set(), {next_pk} if marked else set()
        if records:
            pk, changes, now = records[0]
            return {pk} if self.record(pk, job_pk, token, changes, now) else set(), set()
        if marks:
            return set(), {marks[0]} if self.mark(marks[0], job_pk, token) else set()
        return set(), set()

    def _mark_many(self, job_pk, token, marks):
        """mark() the items `marks` in one UPDATE; the ids marked, as a set. Only this
        claim marks its batch's items, so when fewer rows changed than asked, the ones
        now `processing` are the ones it marked."""
        if not marks:
            return set()
        statement = sql.mark_many_sql(self.model, self.db, len(marks))
        params = [Status.PROCESSING, *marks, Status.PENDING, job_pk, token, *MARK_FENCE]
        with connections[self.db].cursor() as cursor:
            cursor.execute(statement, params)
            changed = cursor.rowcount
        if changed == len(marks):
            return set(marks)
        if not changed:
            return set()
        return set(self.filter(pk__in=marks, status=Status.PROCESSING).values_list("pk", flat=True))

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
        reason = reasons.as_reason(reason)
        return interrupted.update(
            status=Status.FAILED,
            processed_at=now,
            attempt_log=self.logged_attempt(Status.FAILED, reason, now),
            **reason.columns(),
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
            interrupted_reason = reasons.as_reason(interrupted_reason)
            count += items.filter(status=Status.PROCESSING).update(
                status=Status.FAILED,
                processed_at=now,
                attempt_log=self.logged_attempt(Status.FAILED, interrupted_reason, now),
                **interrupted_reason.columns(),
            )
        return count + items.filter(status__in=ACTIVE_STATUSES).update(
            status=Status.FAILED, processed_at=now, **reasons.columns(reason)
        )

    def fail_possibly_processed(self, job_pk, count, reason, now):
        """Fail the first `count` pending items of a job (in the order a batch takes
        them) with `reason`: after a failover to a standby that may lack their marks, the
        batch that held the job may have processed them. Conditions: the item is
        `pending`; the job is unclaimed (its claim was released for the failover)."""
        job_model = self.model._meta.get_field("job").related_model
        fence = Exists(job_model.objects.filter(pk=job_pk, claim_token__isnull=True))
        first = list(
            self.filter(job_id=job_pk, status=Status.PENDING)
            .order_by("id")
            .values_list("pk", flat=True)[:count]
        )
        reason = reasons.as_reason(reason)
        return self.filter(fence, pk__in=first, status=Status.PENDING).update(
            status=Status.FAILED,
            processed_at=now,
            attempt_log=self.logged_attempt(Status.FAILED, reason, now),
            **reason.columns(),
        )

    def cancel_unfinished(self, job_pk, reason, now):
        """Cancel the active items of a cancelled job. Condition: the job is `cancelled`."""
        job_model = self.model._meta.get_field("job").related_model
        fence = Exists(job_model.objects.filter(pk=job_pk, status=Status.CANCELLED))
        return self.filter(fence, job_id=job_pk, status__in=ACTIVE_STATUSES).update(
            status=Status.CANCELLED, processed_at=now, **reasons.columns(reason)
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
            processed_at=None,
            **reasons.columns(""),
        )

    def logged_attempt(self, status, reason, now):
        """An expression for UPDATE ... SET attempt_log = ...: the log with one more entry
        (see attempt_log_sql), for the bulk writers."""
        statement = sql.attempt_log_sql(connections[self.db].vendor)
        # The SQL is fixed text per database; the entry's values are parameters.
        entry = sql.attempt_entry(status, str(reason), now)
        return RawSQL(statement, entry, output_field=models.JSONField())  # noqa: S611

    def _fenced_update(
        self,
        pk,
        job_pk,
        token,
        expected_status,
        changes,
        attempts_delta=0,
        entry=None,
        fence=OUTCOME_FENCE,
    ):
        """UPDATE one item if it has `expected_status` and `token` holds its job, whose
        status is one of `fence` (two statuses: MARK_FENCE or OUTCOME_FENCE); with `entry`
        (sql.attempt_entry()), the attempt is appended to its attempt_log.

        Written as plain SQL because building the equivalent ORM query per item cost
        ~2 ms, more than an email's send. Values go through each field's
        get_db_prep_save, so every backend gets what Django would give it.
        """
        connection = connections[self.db]
        fields = [self.model._meta.get_field(name) for name in changes]
        statement = sql.fenced_update_sql(
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
        params += [pk, expected_status, job_pk, token, *fence]
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
            return cursor.rowcount


class BulkJobItem(models.Model):
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    # As on the job (BulkJob.reason): the English words for the original's SQL, the code
    # and parameters for people, the provider's words verbatim.
    reason = models.TextField(blank=True, default="")
    reason_code = models.CharField(max_length=64, blank=True, default="", db_default="")
    reason_params = models.JSONField(blank=True, default=dict, db_default={})
    provider_reply = models.TextField(blank=True, default="", db_default="")
    # Every attempt ever made, retries by a person included: a retry does not reset it.
    attempts = models.PositiveSmallIntegerField(default=0)
    # `attempts` when a person last retried the item: the engine's retry limit and
    # backoff count only the attempts since (see attempts_this_round).
    attempts_before_retry = models.PositiveSmallIntegerField(default=0, db_default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    # One entry per attempt's outcome, {"n", "at", "status", "reason"}, appended by the
    # same UPDATE that writes the outcome (see attempt_log_sql); bounded to
    # ATTEMPT_LOG_SIZE entries, keeping the first (the original error) and the latest.
    attempt_log = models.JSONField(default=list, db_default=[], blank=True)

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
