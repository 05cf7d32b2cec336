"""The run loop of a processing command, generic over job kinds.

One run: note the run (and forgive any gap in which no processor ran), rescue stuck
claims and inactive jobs, then serve companies least-recently-served first: claim the
company's oldest active job, process one batch, release, move on, until the time budget
is spent. See DESIGN.md "One run of a processing command".

Every state change is a conditional UPDATE with a row-count check. Item writes are
fenced by the run's claim token (`... AND EXISTS (SELECT 1 FROM jobs WHERE id = ? AND
claim_token = ? AND status = 'processing')`), so a run that lost its claim, or whose job
was cancelled, changes nothing more and stops.
"""

import functools
import logging
import random
import secrets
import time
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, Max, Min, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from . import conf, outage
from .kinds import Outcome, ProviderUnavailable
from .models import ACTIVE_STATUSES, ProcessorRun, Status


@dataclass
class RunSummary:
    kind: str
    companies_served: int = 0
    items_succeeded: int = 0
    items_failed: int = 0
    items_retried: int = 0
    jobs_completed: int = 0
    jobs_expired: int = 0
    claims_released: int = 0
    paused: list = field(default_factory=list)

    @property
    def items_attempted(self):
        return self.items_succeeded + self.items_failed + self.items_retried

    def __str__(self):
        text = (
            f"{self.kind}: served {self.companies_served} compan"
            f"{'y' if self.companies_served == 1 else 'ies'}, "
            f"{self.items_succeeded} succeeded, {self.items_failed} failed, "
            f"{self.items_retried} to retry, {self.jobs_completed} job(s) completed"
        )
        if self.jobs_expired:
            text += f", {self.jobs_expired} expired"
        if self.claims_released:
            text += f", {self.claims_released} stuck claim(s) released"
        if self.paused:
            text += f"; paused: {'; '.join(self.paused)}"
        return text


@dataclass
class Claim:
    """A run's hold on one job."""

    kind: object
    job: object
    token: str

    def update_item(self, item_pk, expected_status, changes, attempts_delta=0):
        """Fenced UPDATE of one item; returns the number of rows changed (0 or 1).

        Written as plain SQL because building the equivalent ORM query per item cost
        ~2 ms, more than the send itself. Values go through each field's
        get_db_prep_save, so every backend gets what Django would give it.
        """
        fields = [self.kind.item_model._meta.get_field(name) for name in changes]
        sql = _fenced_update_sql(self.kind, tuple(f.column for f in fields), bool(attempts_delta))
        params = [
            f.get_db_prep_save(v, connection) for f, v in zip(fields, changes.values(), strict=True)
        ]
        if attempts_delta:
            params.append(attempts_delta)
        params += [item_pk, expected_status, self.job.pk, self.token, Status.PROCESSING]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.rowcount

    def job_row(self):
        return self.kind.job_model.objects.filter(pk=self.job.pk, claim_token=self.token)


@functools.lru_cache(maxsize=64)
def _fenced_update_sql(kind, columns, with_attempts):
    """The SQL of Claim.update_item for one set of columns (built once, reused per item)."""
    item_meta = kind.item_model._meta
    job_meta = kind.job_model._meta
    qn = connection.ops.quote_name
    sets = [f"{qn(column)} = %s" for column in columns]
    if with_attempts:
        sets.append(f"{qn('attempts')} = {qn('attempts')} + %s")
    # The fence is an uncorrelated EXISTS: databases evaluate it once and then reach the
    # item by its primary key. (A `job_id IN (SELECT ...)` fence let PostgreSQL scan all
    # of the job's items through the job_id index when its statistics were stale.)
    # Identifiers come from model metadata through quote_name; values are parameters.
    return (
        f"UPDATE {qn(item_meta.db_table)} SET {', '.join(sets)} "  # noqa: S608
        f"WHERE {qn(item_meta.pk.column)} = %s AND {qn('status')} = %s "
        f"AND EXISTS (SELECT 1 FROM {qn(job_meta.db_table)} "
        f"WHERE {qn(job_meta.pk.column)} = %s AND {qn('claim_token')} = %s "
        f"AND {qn('status')} = %s)"
    )


def logger_for(kind):
    return logging.getLogger(kind.log_name)


def backoff_delay(attempts):
    """Exponential backoff with full jitter: a random delay up to base * 2**(attempts-1), capped."""
    base = conf.get("RETRY_BASE_SECONDS")
    cap = conf.get("RETRY_MAX_SECONDS")
    ceiling = min(cap, base * 2 ** max(0, attempts - 1))
    # Never less than half the ceiling, so a retry is not immediate.
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))


# --- one run -------------------------------------------------------------------------


def run_once(
    kind, *, batch_size=None, max_seconds=None, company_ids=None, should_stop=None, held_tokens=None
):
    """Do one run for a job kind and return its RunSummary.

    held_tokens, if given, is a set the run keeps up to date with the claim tokens it may
    be holding, so that a caller whose run was cut short by a lost database connection
    can give those jobs back with release_claims() once the database answers again.
    """
    batch_size = batch_size or kind.default_batch_size
    max_seconds = max_seconds or conf.get("MAX_SECONDS")
    should_stop = should_stop or (lambda: False)
    deadline = time.monotonic() + max_seconds
    summary = RunSummary(kind=kind.name)

    note_run_started(kind)
    rescue(kind, summary)
    for company_id in companies_in_fair_order(kind, company_ids):
        if should_stop():
            break
        # The budget limits further claims; the first company is always served so a
        # slow rescue can never starve every company.
        if summary.companies_served and time.monotonic() >= deadline:
            break
        claim = claim_next_job(kind, company_id, held_tokens)
        if claim is None:
            continue
        summary.companies_served += 1
        try:
            process_one_batch(claim, batch_size, summary, should_stop)
        finally:
            release(claim)
            if held_tokens is not None:
                held_tokens.discard(claim.token)
    note_run_finished(kind, summary)
    return summary


def note_run_started(kind):
    """Record the run and move inactivity clocks forward by any gap in which no run happened."""
    now = timezone.now()
    previous = ProcessorRun.objects.filter(kind=kind.name).values_list("last_started_at", flat=True)
    previous = previous.first()
    if previous is None:
        ProcessorRun.objects.bulk_create(
            [ProcessorRun(kind=kind.name, last_started_at=now)], ignore_conflicts=True
        )
        return
    # Compare-and-set, so of several runs starting together only one forgives the gap.
    won = ProcessorRun.objects.filter(kind=kind.name, last_started_at=previous).update(
        last_started_at=now
    )
    gap = now - previous
    if won and gap.total_seconds() > conf.get("RUN_GAP_SECONDS"):
        shifted = kind.job_model.objects.filter(
            status=Status.PROCESSING, activity_at__isnull=False
        ).update(activity_at=F("activity_at") + gap)
        if shifted:
            logger_for(kind).info(
                "No run for %s; inactivity clocks of %d job(s) moved forward", gap, shifted
            )


def note_run_finished(kind, summary):
    ProcessorRun.objects.filter(kind=kind.name).update(
        last_finished_at=timezone.now(), last_summary=str(summary)[:300]
    )


# --- rescue --------------------------------------------------------------------------


def rescue(kind, summary):
    """Release stuck claims, then expire jobs that made no progress for too long."""
    log = logger_for(kind)
    now = timezone.now()
    jobs = kind.job_model.objects
    stuck_before = now - timedelta(minutes=conf.get("STUCK_MINUTES"))
    for job_id, token in jobs.filter(
        claim_token__isnull=False, heartbeat_at__lt=stuck_before
    ).values_list("pk", "claim_token"):
        if jobs.filter(pk=job_id, claim_token=token).update(claim_token=None):
            summary.claims_released += 1
            log.warning(
                "Job %s: claim released, no heartbeat for %s minutes (stuck)",
                job_id,
                conf.get("STUCK_MINUTES"),
            )

    inactive_minutes = conf.get("INACTIVE_MINUTES")
    inactive_before = now - timedelta(minutes=inactive_minutes)
    reason = f"Expired: no progress for {inactive_minutes} minutes."
    for job in jobs.filter(
        status=Status.PROCESSING, claim_token__isnull=True, activity_at__lt=inactive_before
    ):
        with transaction.atomic():
            won = jobs.filter(pk=job.pk, status=Status.PROCESSING, claim_token__isnull=True).update(
                status=Status.FAILED, reason=reason, finished_at=now
            )
            if not won:
                continue
            items = kind.item_model.objects.filter(job_id=job.pk)
            resolve_interrupted(kind, items, job.pk)
            items.filter(status__in=ACTIVE_STATUSES).update(
                status=Status.FAILED,
                reason=f"Job expired: no progress for {inactive_minutes} minutes.",
                processed_at=now,
            )
            recount(kind, job.pk)
        summary.jobs_expired += 1
        log.error("Job %s: %s", job.pk, reason)


def resolve_interrupted(kind, items, job_id):
    """Settle items a dead run left `processing` (called only while no live run holds the job)."""
    interrupted = items.filter(status=Status.PROCESSING)
    if kind.interrupted_policy == "redo":
        count = interrupted.update(status=Status.PENDING, next_attempt_at=None)
        verb = "will be redone"
    else:
        count = interrupted.update(
            status=Status.FAILED, reason=kind.interrupted_reason, processed_at=timezone.now()
        )
        verb = "failed, not redone"
    if count:
        logger_for(kind).warning("Job %s: %d interrupted item(s) %s", job_id, count, verb)
    return count


# --- fairness and claiming -----------------------------------------------------------


def companies_in_fair_order(kind, company_ids=None):
    """Companies with active jobs and no live claim, least recently served first.

    "Served" is the latest claim of any of the company's active jobs; never-served
    companies come first, then by their oldest active job.
    """
    rows = kind.job_model.objects.active()
    if company_ids:
        rows = rows.filter(company_id__in=company_ids)
    rows = (
        rows.values("company_id")
        .annotate(
            last_served=Max("claimed_at"),
            oldest=Min("id"),
            claims=Count("claim_token"),
        )
        .filter(claims=0)
        .order_by(F("last_served").asc(nulls_first=True), "oldest")
    )
    return [row["company_id"] for row in rows]


def claim_next_job(kind, company_id, held_tokens=None):
    """Claim the company's oldest active job; None if another run holds the company.

    The token goes into held_tokens before the claiming UPDATE: if the connection drops
    while it runs, the caller cannot know whether it won, and releasing a token that
    was never stored changes nothing.
    """
    jobs = kind.job_model.objects
    job = (
        jobs.active()
        .filter(company_id=company_id)
        .order_by("created_at", "id")
        .only("pk", "status", "claim_token", "company_id", "started_at")
        .first()
    )
    if job is None or job.claim_token is not None:
        return None
    now = timezone.now()
    token = secrets.token_hex(16)
    if held_tokens is not None:
        held_tokens.add(token)
    changes = {
        "status": Status.PROCESSING,
        "claim_token": token,
        "claimed_at": now,
        "heartbeat_at": now,
        "started_at": Coalesce("started_at", Value(now)),
    }
    if job.status == Status.PENDING:
        # A fresh start, or a job an operator reset to pending: its inactivity clock
        # starts now, not when it was first created or last touched.
        changes["activity_at"] = now
    else:
        changes["activity_at"] = Coalesce("activity_at", Value(now))
    try:
        with transaction.atomic():
            won = jobs.filter(pk=job.pk, status=job.status, claim_token__isnull=True).update(
                **changes
            )
    except IntegrityError:
        # The unique index on claimed_company: another run holds another job of this
        # company right now.
        won = 0
    if not won:
        if held_tokens is not None:
            held_tokens.discard(token)
        return None
    job = jobs.get(pk=job.pk)
    claim = Claim(kind=kind, job=job, token=token)
    # Only we hold the job now, so anything still `processing` was left by a dead run.
    resolve_interrupted(kind, kind.item_model.objects.filter(job_id=job.pk), job.pk)
    return claim


def release(claim):
    claim.job_row().update(claim_token=None)


def release_claims(kind, tokens):
    """Release the jobs claimed with any of these tokens; returns how many were held.

    For a run cut short by a lost database connection: its items left `processing` are
    settled by the kind's interrupted policy when the job is next claimed.
    """
    if not tokens:
        return 0
    return kind.job_model.objects.filter(claim_token__in=tokens).update(claim_token=None)


def heartbeat(claim):
    """Refresh the claim; False if the run no longer holds a running job."""
    return bool(
        claim.job_row().filter(status=Status.PROCESSING).update(heartbeat_at=timezone.now())
    )


# --- one batch -----------------------------------------------------------------------


def process_one_batch(claim, batch_size, summary, should_stop=None):
    """Process up to batch_size due items of a claimed job. Returns True if any item was attempted."""
    kind, job = claim.kind, claim.job
    log = logger_for(kind)
    should_stop = should_stop or (lambda: False)
    now = timezone.now()
    items = list(
        kind.batch_items(kind.item_model.objects.filter(job_id=job.pk).due(now)).order_by("id")[
            :batch_size
        ]
    )
    if job.started_at == job.claimed_at:
        log.info("Job %s started: %d item(s)", job.pk, job.total_items)
    tally = {Outcome.DONE: 0, Outcome.FAILED: 0, Outcome.RETRY: 0}
    if items:
        log.info("Job %s: batch of %d item(s)", job.pk, len(items))
        try:
            with kind.open_batch(job, items) as handler:
                _process_items(claim, handler, items, tally, should_stop)
        except ProviderUnavailable as exc:
            _pause(claim, exc, summary)
        except Exception as exc:
            if outage.is_connection_lost(exc):
                raise  # the command waits for the database; pausing the job needs it too
            # A broken setup (a mistyped mail backend, a template error) must not crash
            # the run for every other company; the job shows why it is waiting.
            log.exception("Job %s: the batch could not start", job.pk)
            _pause(claim, f"unexpected error: {type(exc).__name__}: {exc}", summary)
    attempted = sum(tally.values())
    summary.items_succeeded += tally[Outcome.DONE]
    summary.items_failed += tally[Outcome.FAILED]
    summary.items_retried += tally[Outcome.RETRY]
    _update_counters(claim, tally, attempted)
    if _finish_if_done(claim):
        summary.jobs_completed += 1
    return attempted > 0


def _process_items(claim, handler, items, tally, should_stop):
    kind = claim.kind
    log = logger_for(kind)
    last_beat = time.monotonic()
    beat_every = conf.get("HEARTBEAT_SECONDS")
    for item in items:
        if should_stop():
            break
        if time.monotonic() - last_beat >= beat_every:
            if not heartbeat(claim):
                log.warning(
                    "Job %s: claim lost or job no longer running; batch stopped", claim.job.pk
                )
                return
            last_beat = time.monotonic()
        # Mark and commit before the side effect: an interrupted item is then visible as
        # `processing` and is settled by the kind's policy, never silently repeated.
        marked = claim.update_item(
            item.pk, Status.PENDING, {"status": Status.PROCESSING}, attempts_delta=1
        )
        if not marked:
            _explain_stop(claim)
            return
        item.attempts += 1
        try:
            outcome = handler.handle(item)
        except ProviderUnavailable:
            # Nothing was done for this item: give it back without spending an attempt.
            claim.update_item(
                item.pk, Status.PROCESSING, {"status": Status.PENDING}, attempts_delta=-1
            )
            raise
        except Exception as exc:
            if outage.is_connection_lost(exc):
                raise  # not the item's fault; it stays `processing`, settled on the next claim
            log.exception(
                "Job %s: %s raised an unexpected error", claim.job.pk, kind.describe_item(item)
            )
            outcome = Outcome.retry(f"Unexpected error: {type(exc).__name__}: {exc}")
        if not _record(claim, item, outcome, tally):
            log.warning(
                "Job %s: claim lost before recording %s; batch stopped",
                claim.job.pk,
                kind.describe_item(item),
            )
            return


def _explain_stop(claim):
    """Log why a batch stopped; a job cancelled behind the engine's back (plain SQL)
    gets its counters recounted here."""
    kind = claim.kind
    status = kind.job_model.objects.filter(pk=claim.job.pk).values_list("status", flat=True).first()
    if status == Status.CANCELLED:
        recount(kind, claim.job.pk)
        logger_for(kind).info("Job %s: cancelled; batch stopped", claim.job.pk)
    else:
        logger_for(kind).warning(
            "Job %s: claim lost or job no longer running (status %s); batch stopped",
            claim.job.pk,
            status,
        )


def _record(claim, item, outcome, tally):
    """Commit one item's outcome; False if the claim was lost meanwhile."""
    kind = claim.kind
    log = logger_for(kind)
    now = timezone.now()
    changes = dict(outcome.fields)
    kind_of_outcome = outcome.kind
    max_attempts = conf.get("MAX_ATTEMPTS")
    if kind_of_outcome == Outcome.RETRY and item.attempts >= max_attempts:
        kind_of_outcome = Outcome.FAILED
        reason = f"Gave up after {item.attempts} attempts: {outcome.reason}"
    else:
        reason = outcome.reason
    if kind_of_outcome == Outcome.DONE:
        changes.update(
            status=Status.COMPLETED, reason=reason, processed_at=now, next_attempt_at=None
        )
    elif kind_of_outcome == Outcome.FAILED:
        changes.update(status=Status.FAILED, reason=reason, processed_at=now)
    else:
        delay = backoff_delay(item.attempts)
        if outcome.retry_after:
            # Never come back sooner than the provider asked (HTTP Retry-After).
            delay = max(delay, timedelta(seconds=outcome.retry_after))
        changes.update(status=Status.PENDING, reason=reason, next_attempt_at=now + delay)
    saved = claim.update_item(item.pk, Status.PROCESSING, changes)
    if not saved:
        return False
    tally[kind_of_outcome] += 1
    description = kind.describe_item(item)
    if kind_of_outcome == Outcome.DONE:
        log.info("Job %s: %s succeeded", claim.job.pk, description)
    elif kind_of_outcome == Outcome.FAILED:
        log.warning("Job %s: %s failed: %s", claim.job.pk, description, reason)
    else:
        log.info(
            "Job %s: %s will be retried (attempt %d): %s",
            claim.job.pk,
            description,
            item.attempts,
            reason,
        )
    return True


def _pause(claim, exc, summary):
    reason = f"Paused, will retry next run: {exc}"
    claim.job_row().filter(status=Status.PROCESSING).update(reason=reason[:1000])
    summary.paused.append(f"job {claim.job.pk}: {exc}")
    logger_for(claim.kind).error("Job %s: %s", claim.job.pk, reason)


def _update_counters(claim, tally, attempted):
    """Once per batch: add the batch's outcomes to the job's counters."""
    if not attempted:
        return
    now = timezone.now()
    claim.job_row().filter(status=Status.PROCESSING).update(
        succeeded_items=F("succeeded_items") + tally[Outcome.DONE],
        failed_items=F("failed_items") + tally[Outcome.FAILED],
        last_processed_at=now,
        activity_at=now,
        heartbeat_at=now,
    )


def _finish_if_done(claim):
    """Complete the job when no item is left to do. Returns True if it completed it."""
    kind = claim.kind
    if kind.item_model.objects.filter(job_id=claim.job.pk, status__in=ACTIVE_STATUSES).exists():
        return False
    counts = count_items(kind, claim.job.pk)
    failed = counts[Status.FAILED]
    total = sum(counts.values())
    if failed:
        reason = f"{failed} of {total} item(s) failed; see the job's items for reasons."
    else:
        reason = f"All {counts[Status.COMPLETED]} item(s) succeeded."
    if counts[Status.CANCELLED]:
        reason += f" {counts[Status.CANCELLED]} cancelled."
    won = (
        claim.job_row()
        .filter(status=Status.PROCESSING)
        .update(
            status=Status.COMPLETED,
            reason=reason,
            finished_at=timezone.now(),
            total_items=total,
            succeeded_items=counts[Status.COMPLETED],
            failed_items=failed,
            cancelled_items=counts[Status.CANCELLED],
        )
    )
    if won:
        logger_for(kind).info("Job %s completed: %s", claim.job.pk, reason)
    return bool(won)


# --- counts --------------------------------------------------------------------------


def count_items(kind, job_id):
    counts = {status: 0 for status in Status.values}
    rows = (
        kind.item_model.objects.filter(job_id=job_id)
        .values("status")
        .annotate(n=Count("id"))
        .order_by()
    )
    for row in rows:
        counts[row["status"]] = row["n"]
    return counts


def recount(kind, job_id):
    """Set a job's counters from its items (at job end, after cancel or retry)."""
    counts = count_items(kind, job_id)
    kind.job_model.objects.filter(pk=job_id).update(
        total_items=sum(counts.values()),
        succeeded_items=counts[Status.COMPLETED],
        failed_items=counts[Status.FAILED],
        cancelled_items=counts[Status.CANCELLED],
    )
    return counts
