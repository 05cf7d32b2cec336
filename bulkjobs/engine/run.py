"""The run loop of a processing command, generic over job kinds.

One run: note the run (and forgive any gap in which no processor ran), rescue stuck
claims, inactive jobs, jobs paused too long and jobs cancelled by plain SQL, then serve
companies least-recently-served first: claim a job of the company, settle what a dead
run left, process one batch, release, move on, until the time budget is spent. See
DESIGN.md "One run of a processing command".

Status changes go through the named queryset methods of bulkjobs.models (the state
machine); what an item's outcome means is decided by bulkjobs.decisions.decide(). Item
writes are fenced by the run's claim token, so a run that lost its claim, or whose job
was cancelled, changes nothing more and stops.
"""

import logging
import random
import secrets
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Count, Exists, F, Max, Min, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from .. import conf
from ..decisions import Backoff, decide
from ..kinds import Outcome, ProviderUnavailable, RateLimited
from ..models import ACTIVE_STATUSES, PAUSED_PREFIX, InterruptedPolicy, ProcessorRun, Status
from ..ops import alerts
from . import outage, ratelimit
from .activity import record_batch_activity
from .threads import WorkerThreads

#: How many of a company's active jobs a claim looks at, oldest first, for one with work
#: due now (the oldest may wait for its items' backoff).
CLAIM_LOOKAHEAD = 10
#: A batch gets a second provider connection (lane) only for this many items or more:
#: opening one costs a few round trips, worth it for a run of items, not for two.
MIN_ITEMS_PER_LANE = 10


@dataclass
class RunSummary:
    kind: str
    #: distinct companies that had a batch (a company may have one per round)
    companies_served: int = 0
    batches: int = 0
    items_succeeded: int = 0
    items_failed: int = 0
    items_retried: int = 0
    jobs_completed: int = 0
    jobs_expired: int = 0
    claims_released: int = 0
    paused: list = field(default_factory=list)
    #: job id -> what it waits for (the latest word per job: a run may serve it often)
    waiting: dict = field(default_factory=dict)

    @property
    def items_attempted(self):
        return self.items_succeeded + self.items_failed + self.items_retried

    def add(self, other):
        """Add another (one batch's) summary to this one."""
        for name in (
            "batches",
            "items_succeeded",
            "items_failed",
            "items_retried",
            "jobs_completed",
            "jobs_expired",
            "claims_released",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.paused += other.paused
        self.waiting.update(other.waiting)

    def __str__(self):
        text = (
            f"{self.kind}: served {self.companies_served} compan"
            f"{'y' if self.companies_served == 1 else 'ies'} in {self.batches} batch"
            f"{'' if self.batches == 1 else 'es'}, "
            f"{self.items_succeeded} succeeded, {self.items_failed} failed, "
            f"{self.items_retried} to retry, {self.jobs_completed} job(s) completed"
        )
        if self.jobs_expired:
            text += f", {self.jobs_expired} expired"
        if self.claims_released:
            text += f", {self.claims_released} stuck claim(s) released"
        if self.paused:
            text += f"; paused: {'; '.join(self.paused)}"
        if self.waiting:
            # One example: every company waiting for its pace is the everyday case.
            job_id, reason = next(iter(self.waiting.items()))
            more = len(self.waiting) - 1
            text += f"; waiting: job {job_id}: {reason}" + (f" (+{more} more)" if more else "")
        return text


@dataclass
class Claim:
    """A run's hold on one job: every write through it is fenced by its token."""

    kind: object
    job: object
    token: str

    @property
    def jobs(self):
        return self.kind.job_model.objects

    @property
    def items(self):
        return self.kind.item_model.objects

    def mark(self, item_pk):
        return self.items.mark(item_pk, self.job.pk, self.token)

    def give_back(self, item_pk):
        return self.items.give_back(item_pk, self.job.pk, self.token)

    def record(self, item_pk, changes, now=None):
        return self.items.record(item_pk, self.job.pk, self.token, changes, now)

    def record_and_mark(self, item_pk, changes, now, next_pk):
        return self.items.record_and_mark(item_pk, self.job.pk, self.token, changes, now, next_pk)

    def heartbeat(self):
        """Refresh the claim; False if the run no longer holds a running job."""
        return self.jobs.heartbeat(self.job.pk, self.token, timezone.now())

    def release(self):
        return self.jobs.release(self.job.pk, self.token)


def in_worker_thread(stop, function, *args):
    """Call function(*args) as a worker thread must: on an error, set the `stop` event (the
    other workers start nothing more) and note a lost database connection on the error,
    asked here, in the thread whose connection it is (the thread it is re-raised in has
    its own, which may be fine). The thread's connections are the pool's to close
    (bulkjobs.engine.threads)."""
    try:
        return function(*args)
    except BaseException as exc:
        stop.set()
        if outage.is_connection_lost(exc):
            outage.mark_connection_lost(exc)
        raise


def logger_for(kind):
    return logging.getLogger(kind.log_name)


# --- one run -------------------------------------------------------------------------


def run_once(
    kind,
    *,
    batch_size=None,
    max_seconds=None,
    company_ids=None,
    should_stop=None,
    held_tokens=None,
    concurrency=None,
):
    """Do one run for a job kind and return its RunSummary.

    Companies are served least recently served first, up to `concurrency` at once (each
    in its own thread, with its own claim and database connection), one batch at a time;
    a company whose batch made progress queues up again behind the others, while time
    remains (see Run.serve_all).

    held_tokens, if given, is a set the run keeps up to date with the claim tokens it may
    be holding, so that a caller whose run was cut short by a lost database connection
    can give those jobs back with release_claims() once the database answers again.
    Worker threads add and discard tokens in it (single set operations, atomic in CPython).
    """
    conf.validate()
    run = Run(
        kind,
        batch_size=batch_size or kind.default_batch_size,
        deadline=time.monotonic() + (max_seconds or conf.get("MAX_SECONDS")),
        should_stop=should_stop or (lambda: False),
        held_tokens=held_tokens,
        concurrency=concurrency or kind.default_concurrency,
    )
    last_starts = note_run_started(kind)
    rescue(kind, run.summary)
    run.serve_all(lambda: companies_in_fair_order(kind, company_ids))
    note_run_finished(kind, run.summary)
    evaluate_alerts(kind, run.summary, last_starts)
    return run.summary


class Run:
    """What one run's batches share: its budget, its summary, and the worker threads."""

    def __init__(self, kind, *, batch_size, deadline, should_stop, held_tokens, concurrency):
        self.kind = kind
        self.batch_size = batch_size
        self.deadline = deadline
        self.should_stop = should_stop
        self.held_tokens = held_tokens
        self.concurrency = concurrency
        self.summary = RunSummary(kind=kind.name)
        self.limits = batch_limits(kind)
        self._lock = threading.Lock()
        # Provider connections the run may hold at once, shared out among the batches in
        # flight: each gets at least the kind's connections per batch, and when fewer
        # companies are left than workers, the few get the connections the others left.
        self._connections = concurrency * kind.connections_per_batch
        self._connections_in_use = 0
        self._batches_in_flight = 0
        #: Companies queued or being served in this run (kept by serve_all).
        self.companies_left = 1
        self._served = set()
        #: company id -> Unix time of the next slot of the limit that stopped its batch
        self._resting = {}
        #: company id -> Unix time after which a batch a provider's limit stopped may go on
        self._retry_at = {}
        # Set when a worker thread raised: the others claim nothing more.
        self._failed = threading.Event()
        #: Threads for the lanes of every batch of the run beyond each batch's first,
        #: which runs in the thread serving the company.
        self.lane_threads = WorkerThreads(max(1, self._connections - 1), f"{kind.name}-lane")

    def over(self):
        return self.should_stop() or self._failed.is_set() or time.monotonic() >= self.deadline

    def with_tokens(self, companies, pace_tokens=1):
        """The companies whose pace bucket holds `pace_tokens` tokens now (or its whole
        burst, if smaller) while the kind's shared buckets have one; all of them when no
        limit is set; in their fair order. One query."""
        now = time.time()
        # A company whose batch a limit stopped in this run rests until its next slot.
        companies = [c for c in companies if self._resting.get(c, 0) <= now]
        keys = {self.kind.company_bucket(company_id): company_id for company_id in companies}
        company_rate = self.limits[0][1]
        shared = [(key, rate) for key, rate, _what in self.limits[1:]]
        if company_rate is None and not shared:
            return companies
        needs = {}
        for key, rate in shared:
            needs.setdefault((rate, 1), []).append(key)
        if company_rate is not None:
            needs.setdefault((company_rate, pace_tokens), []).extend(keys)
        short = ratelimit.short_buckets(needs, now)
        if any(key in short for key, _rate in shared):
            return []
        return [company_id for key, company_id in keys.items() if key not in short]

    def serve_all(self, fair_order):
        """Serve companies, one batch at a time, until the budget is spent or nothing more
        can be done now.

        Up to `concurrency` companies are served at once, and a free worker takes the
        next company at once: nobody waits for the slowest batch of a round. A company
        whose batch made progress queues up again behind the others if its buckets still
        have tokens; one that made none (nothing due, limited, held by another run) is
        not served again in this run, except one that a provider's shared limit stopped:
        it goes on once the limit's next slot opens, if that is within the budget. When
        the queue runs dry the fair order is read again, for companies whose jobs appeared
        meanwhile. The first company is served even when the budget is spent, so a slow
        rescue can never starve every company.
        """
        queue = deque(fair_order())
        if not queue:
            return
        # A company whose pace bucket is empty would be claimed and released for nothing
        # (and say so in the log, run after run); one query tells which.
        queue = deque(self.with_tokens(queue))
        # Served without progress in this run, or waiting for a limit: not again.
        done = set()
        # (Unix time, company id) of companies waiting for a provider's next slot.
        later = []
        futures = {}
        errors = []
        first = True
        # One company (or a concurrency of 1) is served in this thread: no threads start.
        workers = min(self.concurrency, len(queue))
        pool = None
        if workers > 1:
            pool = WorkerThreads(workers, f"{self.kind.name}-run")
        try:
            while True:
                self.companies_left = len(queue) + len(futures)
                while queue and len(futures) < workers and (first or not self.over()):
                    company_id = queue.popleft()
                    if company_id in done or company_id in futures.values():
                        continue
                    if pool is None:
                        self._queue_again(company_id, self.serve(company_id), queue, done, later)
                    else:
                        futures[
                            pool.submit(in_worker_thread, self._failed, self.serve, company_id)
                        ] = company_id
                    first = False
                if futures:
                    # wait() blocks on an Event, which a signal (SIGTERM) can interrupt, so
                    # should_stop() is set while the workers finish their current items.
                    finished, _pending = wait(futures, return_when=FIRST_COMPLETED)
                    for future in finished:
                        company_id = futures.pop(future)
                        if future.exception() is not None:
                            errors.append(future.exception())
                        else:
                            self._queue_again(company_id, future.result(), queue, done, later)
                    continue
                # Nothing in flight, and the queue is empty (or the budget spent).
                if self.over():
                    break
                waiting = {company_id for _at, company_id in later}
                fresh = [c for c in fair_order() if c not in done and c not in waiting]
                queue.extend(self.with_tokens(fresh) if fresh else [])
                if not queue and later:
                    later.sort()
                    self._sleep_until(later[0][0])
                    while later and later[0][0] <= time.time():
                        queue.append(later.pop(0)[1])
                    continue
                if not queue:
                    break
        finally:
            if pool is not None:
                pool.shutdown()
            self.lane_threads.shutdown()
        if errors:
            raise errors[0]

    def _queue_again(self, company_id, progress, queue, done, later):
        """After a company's batch: waiting for a provider's next slot if its limit
        stopped the batch and the slot opens within the budget; back in the queue if it
        made progress and its pace has a whole batch's worth of tokens now (one query, and
        only when a limit is set); else done for this run."""
        retry_at = self._retry_at.pop(company_id, None)
        wait = None if retry_at is None else retry_at - time.time()
        # A slot that should be open already yet was refused is not waited for again.
        if wait is not None and 0 < wait < self.deadline - time.monotonic():
            later.append((retry_at, company_id))
        elif progress and self.with_tokens([company_id], pace_tokens=self.batch_size):
            # Again in this run only with a whole batch's worth of pace: the pace is spent
            # in batches, as the original's 50 per minute, not trickled out one by one.
            queue.append(company_id)
        else:
            done.add(company_id)

    def _sleep_until(self, unix_time):
        """Wait for a limit's next slot, but no longer than the run may last."""
        while time.time() < unix_time and not self.over():
            time.sleep(min(0.2, max(0.0, unix_time - time.time())))

    def _take_connections(self):
        """How many provider connections (lanes) the next batch may open: its share of
        those free, never fewer than the kind's connections per batch."""
        with self._lock:
            self._batches_in_flight += 1
            free = self._connections - self._connections_in_use
            # Batches that may still start beside this one, besides those in flight.
            starting = min(self.concurrency, self.companies_left) - self._batches_in_flight + 1
            share = max(self.kind.connections_per_batch, free // max(1, starting))
            self._connections_in_use += share
            return share

    def _give_back_connections(self, lanes):
        with self._lock:
            self._batches_in_flight -= 1
            self._connections_in_use -= lanes

    def serve(self, company_id):
        """Claim a job of the company, process one batch, release. True if any item was
        attempted."""
        claim = claim_next_job(self.kind, company_id, self.held_tokens)
        if claim is None:
            return False
        summary = RunSummary(kind=self.kind.name, batches=1)
        lanes = self._take_connections()
        batch = Batch(
            claim,
            summary,
            self.should_stop,
            self.limits,
            lanes=lanes,
            lane_threads=self.lane_threads,
        )
        try:
            progress = batch.process(self.batch_size)
            if batch.rate_limited is not None:
                self._resting[company_id] = batch.rate_limited.next_at
                if not batch.paced:
                    self._retry_at[company_id] = batch.rate_limited.next_at
            return progress
        finally:
            self._give_back_connections(lanes)
            release(claim)
            if self.held_tokens is not None:
                self.held_tokens.discard(claim.token)
            with self._lock:
                self.summary.add(summary)
                self._served.add(company_id)
                self.summary.companies_served = len(self._served)


def batch_limits(kind):
    """The buckets a batch takes one token per item from: the company's pace first (its
    key filled in per company, a rate of None when it is off), then the kind's shared
    limits."""
    rate = kind.company_rate
    return [(None, rate, f"the company's pace ({rate})"), *kind.batch_rate_limits()]


def note_run_started(kind):
    """Record the run and move inactivity and pause clocks forward by any gap in which no
    run happened. Returns every kind's last start before this run ({kind name: time}),
    read in the same query, so the alerts can tell a stopped processor without another."""
    now = timezone.now()
    last_starts = dict(ProcessorRun.objects.values_list("kind", "last_started_at"))
    previous = last_starts.get(kind.name)
    if previous is None:
        ProcessorRun.objects.bulk_create(
            [ProcessorRun(kind=kind.name, last_started_at=now)], ignore_conflicts=True
        )
        return last_starts
    gap = now - previous
    changes = {"last_started_at": now}
    seconds = gap.total_seconds()
    if 0 < seconds <= conf.get("RUN_GAP_SECONDS"):
        # The schedule as it really is, smoothed over the last runs (a gap of downtime
        # is not the schedule).
        changes["interval_seconds"] = Coalesce(
            F("interval_seconds") * 0.7 + Value(0.3 * seconds), Value(seconds)
        )
    # Compare-and-set, so of several runs starting together only one forgives the gap.
    won = ProcessorRun.objects.filter(kind=kind.name, last_started_at=previous).update(**changes)
    if won and gap.total_seconds() > conf.get("RUN_GAP_SECONDS"):
        # Not a status change: only the clocks move (an empty paused_at stays empty).
        shifted = kind.job_model.objects.filter(
            status=Status.PROCESSING, activity_at__isnull=False
        ).update(activity_at=F("activity_at") + gap, paused_at=F("paused_at") + gap)
        if shifted:
            logger_for(kind).info(
                "No run for %s; inactivity clocks of %d job(s) moved forward", gap, shifted
            )
    return last_starts


def evaluate_alerts(kind, summary, last_starts):
    """Send the alerts due after this run (bulkjobs/ops/alerts.py). A broken alert (a
    template error) is logged, not raised: the run's work is done and recorded."""
    try:
        alerts.evaluate_after_run(kind, summary=summary, last_starts=last_starts)
    except Exception as exc:
        if outage.is_connection_lost(exc):
            raise
        logging.getLogger("bulkjobs.alerts").exception("Alerts could not be evaluated")


def note_run_finished(kind, summary):
    """Record the run's end and summary, and count the companies with work then (in the
    same UPDATE): the dashboard's "time left" reads that count instead of counting every
    tenant's active jobs on each poll of each viewer."""
    ProcessorRun.objects.filter(kind=kind.name).update(
        last_finished_at=timezone.now(),
        last_summary=str(summary)[:300],
        companies_with_work=companies_with_work(kind),
    )


def companies_with_work(kind):
    """Subquery: how many companies have active jobs of the kind (all tenants), through
    the active-jobs index. Grouped by a constant, i.e. not at all: one row, 0 if none."""
    return Subquery(
        kind.job_model.objects.active()
        .order_by()
        .annotate(everyone=Value(1))
        .values("everyone")
        .annotate(companies=Count("company_id", distinct=True))
        .values("companies")
    )


# --- rescue --------------------------------------------------------------------------


def rescue(kind, summary):
    """Release stuck claims; expire jobs without progress for too long (inactive, or
    paused past the pause limit); recount jobs cancelled by plain SQL."""
    log = logger_for(kind)
    now = timezone.now()
    jobs = kind.job_model.objects
    stuck_minutes = conf.get("STUCK_MINUTES")
    stuck_before = now - timedelta(minutes=stuck_minutes)
    for job_id, token in jobs.filter(
        claim_token__isnull=False, heartbeat_at__lt=stuck_before
    ).values_list("pk", "claim_token"):
        if jobs.release_stuck(job_id, token, stuck_before):
            summary.claims_released += 1
            log.warning(
                "Job %s: claim released, no heartbeat for %g minutes (stuck)",
                job_id,
                stuck_minutes,
            )

    inactive_minutes = conf.get("INACTIVE_MINUTES")
    pause_hours = conf.get("PAUSE_LIMIT_HOURS")
    needs_settling = Q(
        # Inactive: could work but made no progress. A paused job waits for its
        # provider instead, and has its own limit.
        status=Status.PROCESSING,
        claim_token__isnull=True,
        paused_at__isnull=True,
        activity_at__lt=now - timedelta(minutes=inactive_minutes),
    ) | Q(
        status=Status.PROCESSING,
        claim_token__isnull=True,
        paused_at__lt=now - timedelta(hours=pause_hours),
    )
    # The engine's own cancel sets finished_at; the original's cancel SQL does not.
    needs_settling |= Q(status=Status.CANCELLED, finished_at__isnull=True)
    for job in jobs.filter(needs_settling).only("pk", "status", "reason", "paused_at"):
        if job.status == Status.CANCELLED:
            settle_cancelled_by_sql(kind, job.pk, now)
        elif job.paused_at is not None:
            reason = f"Failed: paused for more than {pause_hours:g} hours: {job.pause_cause}"
            if expire(kind, job.pk, reason, now):
                summary.jobs_expired += 1
        else:
            idle = f"no progress for {inactive_minutes:g} minutes."
            if expire(kind, job.pk, f"Expired: {idle}", now, items_reason=f"Job expired: {idle}"):
                summary.jobs_expired += 1


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
    logger_for(kind).error("Job %s: %s", job_pk, reason)
    return True


def settle_cancelled_by_sql(kind, job_pk, now):
    """A job cancelled by plain SQL: recount its counters from its items, drop its claim."""
    with transaction.atomic():
        if not kind.job_model.objects.settle_cancelled_by_sql(job_pk, now):
            return False
        counts = recount(kind, job_pk)
    logger_for(kind).info(
        "Job %s: cancelled outside the app; counters recounted (%d cancelled item(s))",
        job_pk,
        counts[Status.CANCELLED],
    )
    return True


def settle_interrupted(claim):
    """Settle items a dead run left `processing`, by the kind's policy; fenced by the claim,
    so a run that lost its claim meanwhile changes nothing. Returns the count settled."""
    kind = claim.kind
    count = kind.item_model.objects.settle_interrupted(
        claim.job.pk, claim.token, kind.interrupted_policy, kind.interrupted_reason, timezone.now()
    )
    if count:
        verb = (
            "will be redone"
            if kind.interrupted_policy == InterruptedPolicy.REDO
            else "failed, not redone"
        )
        logger_for(kind).warning("Job %s: %d interrupted item(s) %s", claim.job.pk, count, verb)
    return count


# --- fairness and claiming -----------------------------------------------------------


def companies_in_fair_order(kind, company_ids=None):
    """Companies with active jobs and no running claim, least recently served first.

    "Served" is the latest claim of any of the company's active jobs; never-served
    companies come first, then by their oldest active job. A claim left on a job an
    operator reset to pending does not hold the company back (see claim_job()).
    """
    rows = kind.job_model.objects.active()
    if company_ids:
        rows = rows.filter(company_id__in=company_ids)
    rows = (
        rows.values("company_id")
        .annotate(
            last_served=Max("claimed_at"),
            oldest=Min("id"),
            claims=Count("claim_token", filter=Q(status=Status.PROCESSING)),
        )
        .filter(claims=0)
        .order_by(F("last_served").asc(nulls_first=True), "oldest")
    )
    return [row["company_id"] for row in rows]


def claim_next_job(kind, company_id, held_tokens=None):
    """Claim a job of the company and settle what a dead run left in it; None if the
    company is held by another run or has nothing to do now."""
    claim = claim_job(kind, company_id, held_tokens)
    if claim is not None:
        settle_interrupted(claim)
    return claim


def claim_job(kind, company_id, held_tokens=None):
    """Claim the company's oldest active job that has work now; None if there is none.

    "Work now": an item due, an item left `processing` by a dead run, or nothing active
    left (the job is to be finished). A job whose items all wait for their backoff is
    passed over, so it does not hold up the company's next job; the database's unique
    index still allows one claimed job per company. A pending job still carrying a dead
    run's claim (an operator's reset) is the company's claimed job, so it is taken first:
    the engine never leaves a claimed job pending, and a run still holding it stops at its
    next fenced write, which requires status `processing`.

    The token goes into held_tokens before the claiming UPDATE: if the connection drops
    while it runs, the caller cannot know whether it won, and releasing a token that was
    never stored changes nothing.
    """
    now = timezone.now()
    items = kind.item_model.objects.filter(job_id=OuterRef("pk"))
    # All active jobs, claimed ones included: a company whose job is held by a live run
    # is left alone. Looking only at unclaimed jobs would let a run take the company's
    # second job in the instant the first one's batch is released, out of order.
    candidates = list(
        kind.job_model.objects.active()
        .filter(company_id=company_id)
        .annotate(
            # Both EXISTS are served by the items' (job, status, id) index.
            ready=Exists(items.filter(status=Status.PROCESSING)) | Exists(items.due(now)),
            waiting=Exists(items.waiting(now)),
        )
        .order_by("created_at", "id")
        .only("pk", "status", "claim_token", "company_id", "started_at")[:CLAIM_LOOKAHEAD]
    )
    if any(j.claim_token and j.status == Status.PROCESSING for j in candidates):
        return None
    job = next((j for j in candidates if j.claim_token), None)
    if job is None:
        job = next((j for j in candidates if j.ready or not j.waiting), None)
    if job is None:
        return None
    token = secrets.token_hex(16)
    if held_tokens is not None:
        held_tokens.add(token)
    try:
        with transaction.atomic():
            won = kind.job_model.objects.claim(
                job.pk, status=job.status, previous_token=job.claim_token, token=token, now=now
            )
    except IntegrityError:
        # The unique index on claimed_company: another run holds another job of this
        # company right now.
        won = False
    if not won:
        if held_tokens is not None:
            held_tokens.discard(token)
        return None
    if job.claim_token:
        logger_for(kind).warning(
            "Job %s: reset to pending while claimed; the old claim is dropped", job.pk
        )
    return Claim(kind=kind, job=kind.job_model.objects.get(pk=job.pk), token=token)


def release(claim):
    claim.release()


def release_claims(kind, tokens):
    """Release the jobs claimed with any of these tokens; returns how many were held.

    For a run cut short by a lost database connection: its items left `processing` are
    settled by the kind's interrupted policy when the job is next claimed.
    """
    return kind.job_model.objects.release_tokens(tokens)


# --- one batch -----------------------------------------------------------------------


def process_one_batch(claim, batch_size, summary, should_stop=None, limits=None):
    """Process up to batch_size due items of a claimed job, as many as the rate limits
    (see batch_limits(); all of the kind's by default) grant. Returns True if any item
    was attempted."""
    limits = batch_limits(claim.kind) if limits is None else limits
    return Batch(claim, summary, should_stop, limits).process(batch_size)


class Batch:
    """One batch of a claimed job: the claim, the outcomes' tally, the log, the run's summary."""

    def __init__(self, claim, summary, should_stop=None, limits=(), lanes=1, lane_threads=None):
        self.claim = claim
        self.limits = limits
        #: Provider connections (lanes) this batch may open at once.
        self.lanes = lanes
        #: The run's threads for lanes (WorkerThreads); None: the batch starts its own.
        self.lane_threads = lane_threads
        #: The buckets this batch took tokens from, and how many items they pay for.
        self.buckets = []
        self.granted = 0
        #: Items marked `processing` (their tokens were used).
        self.marked = 0
        self.kind = claim.kind
        self.job = claim.job
        self.summary = summary
        self.should_stop = should_stop or (lambda: False)
        self.log = logger_for(self.kind)
        self.tally = {Outcome.DONE: 0, Outcome.FAILED: 0, Outcome.RETRY: 0}
        self.pause_cause = None
        #: The RateLimited that stopped the batch, if one did.
        self.rate_limited = None
        #: Set when a lane stops the batch; the other lanes stop before their next item.
        self.stopped = threading.Event()
        # Guards the counts that lanes (threads) add to.
        self.lock = threading.Lock()
        #: True when the company's own pace trimmed the batch (its next slot is the next
        #: minute's business, not this run's).
        self.paced = False
        self.max_attempts = conf.get("MAX_ATTEMPTS")
        self.backoff = Backoff(conf.get("RETRY_BASE_SECONDS"), conf.get("RETRY_MAX_SECONDS"))

    @property
    def attempted(self):
        return sum(self.tally.values())

    def process(self, batch_size):
        kind, job = self.kind, self.job
        now = timezone.now()
        due = kind.item_model.objects.filter(job_id=job.pk).due(now)
        items = list(kind.batch_items(due).order_by("id")[:batch_size])
        # Tokens are taken for the items fetched, not for batch_size, so none are wasted.
        items = self._take_tokens(items)
        if job.started_at == job.claimed_at:
            self.log.info("Job %s started: %d item(s)", job.pk, job.total_items)
        busy_since = time.monotonic()
        if items:
            self.log.info("Job %s: batch of %d item(s)", job.pk, len(items))
            self._process_lanes(items)
        busy_seconds = time.monotonic() - busy_since
        self._refund(self.granted - self.marked)
        self.summary.items_succeeded += self.tally[Outcome.DONE]
        self.summary.items_failed += self.tally[Outcome.FAILED]
        self.summary.items_retried += self.tally[Outcome.RETRY]
        if self.attempted:
            now = timezone.now()
            self.claim.jobs.record_batch(
                job.pk,
                self.claim.token,
                succeeded=self.tally[Outcome.DONE],
                failed=self.tally[Outcome.FAILED],
                now=now,
                ends_pause=self.pause_cause is None,
                ends_wait=self.pause_cause is None and self.rate_limited is None,
            )
            # The charts' hourly totals: one upsert per batch, not per item.
            record_batch_activity(
                job.company_id,
                kind.name,
                now,
                processed=self.tally[Outcome.DONE] + self.tally[Outcome.FAILED],
                failed=self.tally[Outcome.FAILED],
                attempts=self.attempted,
                busy_seconds=busy_seconds,
            )
        if self.pause_cause is not None:
            self._pause()
        elif self.rate_limited is not None:
            self.wait(self.rate_limited.reason)
        elif self._finish_if_done():
            self.summary.jobs_completed += 1
        return self.attempted > 0

    def _process_lanes(self, items):
        """Work through the items over up to `self.lanes` provider connections at once: each lane is a run of consecutive items with a BatchHandler
        (and so a connection) of its own, in its own thread, all under the batch's claim.
        A provider waits one round trip per reply, so lanes multiply what one company gets
        through; a lane that stops the batch (a pause, a limit, a lost claim) stops the
        others before their next item. Small batches keep one lane."""
        lanes = min(self.lanes, -(-len(items) // MIN_ITEMS_PER_LANE))
        if lanes <= 1:
            self._process_lane(items)
            return
        size = -(-len(items) // lanes)
        first, *others = [items[start : start + size] for start in range(0, len(items), size)]
        # The first lane runs in this thread, on its database connection: a batch of N
        # lanes holds N connections to the database, not N + 1.
        pool = self.lane_threads or WorkerThreads(len(others), f"{self.kind.name}-lane")
        futures = [
            pool.submit(in_worker_thread, self.stopped, self._process_lane, lane) for lane in others
        ]
        try:
            self._process_lane(first)
        except BaseException:
            self.stopped.set()
            raise
        finally:
            wait(futures)
            if pool is not self.lane_threads:
                pool.shutdown()
        errors = [future.exception() for future in futures if future.exception() is not None]
        if errors:
            raise errors[0]

    def _process_lane(self, items):
        try:
            with self.kind.open_batch(self.job, items) as handler:
                self._process_items(handler, items)
        except ProviderUnavailable as exc:
            self.pause_cause = str(exc)
            self.stopped.set()
        except RateLimited as exc:
            self.rate_limited = exc
            self.stopped.set()
        except Exception as exc:
            if outage.is_connection_lost(exc):
                raise  # the command waits for the database; pausing the job needs it too
            # A broken setup (a mistyped mail backend, a template error) must not crash
            # the run for every other company; the job shows why it is waiting.
            self.log.exception("Job %s: the batch could not start", self.job.pk)
            self.pause_cause = f"unexpected error: {type(exc).__name__}: {exc}"
            self.stopped.set()

    def _process_items(self, handler, items):
        last_beat = time.monotonic()
        beat_every = conf.get("HEARTBEAT_SECONDS")
        # The item just handled and its decision, not yet written: its outcome goes in
        # the same statement as the next item's mark (see _mark), or alone at the end.
        handled = None
        for item in items:
            if self.should_stop() or self.stopped.is_set():
                break
            if time.monotonic() - last_beat >= beat_every:
                if not self.claim.heartbeat():
                    # The outcome of the item before is written all the same (if the claim
                    # is gone, that write says so).
                    if handled is None or self._record(*handled):
                        self._explain_stop()
                    return
                last_beat = time.monotonic()
            # Mark and commit before the side effect: an interrupted item is then visible
            # as `processing` and is settled by the kind's policy, never silently repeated.
            marked, handled = self._mark(item, handled), None
            if not marked:
                return
            item.attempts += 1
            try:
                outcome = handler.handle(item)
            except (ProviderUnavailable, RateLimited):
                # Nothing was done for this item: give it back without spending an attempt.
                self.claim.give_back(item.pk)
                raise
            except Exception as exc:
                if outage.is_connection_lost(exc):
                    raise  # not the item's fault; it stays `processing`, settled on the next claim
                self.log.exception(
                    "Job %s: %s raised an unexpected error",
                    self.job.pk,
                    self.kind.describe_item(item),
                )
                outcome = Outcome.retry(f"Unexpected error: {type(exc).__name__}: {exc}")
            handled = (item, self._decision_for(item, outcome))
        if handled is not None:
            self._record(*handled)

    def _mark(self, item, handled):
        """Mark `item` processing, writing the outcome of the item `handled` before it (if
        any) in the same statement. False if the batch must stop: the claim was lost or
        the job stopped running (cancelled), before or between the two writes."""
        if handled is None:
            marked = self.claim.mark(item.pk)
        else:
            previous, (changes, now, counted_as, reason) = handled
            recorded, marked = self.claim.record_and_mark(previous.pk, changes, now, item.pk)
            if not recorded:
                self._warn_not_recorded(previous)
                if marked:
                    # Nothing is done for `item` in a batch that lost track of its state.
                    self.claim.give_back(item.pk)
                return False
            self._count(previous, counted_as, reason)
        if not marked:
            self._explain_stop()
            return False
        with self.lock:
            self.marked += 1
        return True

    def _take_tokens(self, items):
        """Take one token per item from each bucket in turn, each for what the previous
        granted; the batch is trimmed to the smallest grant, and tokens an earlier bucket
        granted beyond it are refunded. A short grant notes what the job waits for."""
        wanted = len(items)
        taken = []
        for key, rate, what in self.limits:
            if rate is None or not wanted:
                continue
            # The company's pace comes first, its key (None in the list) filled in here.
            is_pace = key is None
            key = self.kind.company_bucket(self.job.company_id) if is_pace else key
            grant = ratelimit.take(key, rate, wanted)
            taken.append((key, rate, grant.granted))
            if grant.granted < wanted:
                self.rate_limited = RateLimited(what, grant.next_at)
                self.paced = is_pace
                wanted = grant.granted
        for key, rate, granted in taken:
            ratelimit.refund(key, rate, granted - wanted)
        self.buckets = [(key, rate) for key, rate, _granted in taken]
        self.granted = wanted
        return items[:wanted]

    def _refund(self, unused):
        """Give back the tokens of items the batch did not get to (a pause, a lost claim,
        a stop), so the company's pace is not spent on nothing."""
        for key, rate in self.buckets:
            ratelimit.refund(key, rate, unused)

    def _decision_for(self, item, outcome):
        """What to write for an item's outcome (item.attempts includes this attempt): the
        item's changes, when, how it counts and why. The retry limit counts the attempts
        since a person last retried the item."""
        now = timezone.now()
        decision = decide(
            outcome,
            attempts=item.attempts_this_round,
            max_attempts=self.max_attempts,
            now=now,
            backoff=self.backoff,
            rng=random,
        )
        changes = {**outcome.fields, **decision.changes()}
        return changes, now, decision.counted_as, decision.reason

    def record(self, item, outcome):
        """Commit one item's outcome (item.attempts includes this attempt) and note it in the
        item's attempt_log, in one UPDATE; False if the claim was lost meanwhile."""
        return self._record(item, self._decision_for(item, outcome))

    def _record(self, item, decided):
        changes, now, counted_as, reason = decided
        if not self.claim.record(item.pk, changes, now):
            self._warn_not_recorded(item)
            return False
        self._count(item, counted_as, reason)
        return True

    def _warn_not_recorded(self, item):
        self.stopped.set()
        self.log.warning(
            "Job %s: claim lost before recording %s; batch stopped",
            self.job.pk,
            self.kind.describe_item(item),
        )

    def _count(self, item, counted_as, reason):
        """Tally and log an outcome that was written."""
        with self.lock:
            self.tally[counted_as] += 1
        description = self.kind.describe_item(item)
        if counted_as == Outcome.DONE:
            self.log.info("Job %s: %s succeeded", self.job.pk, description)
        elif counted_as == Outcome.FAILED:
            self.log.warning("Job %s: %s failed: %s", self.job.pk, description, reason)
        else:
            self.log.info(
                "Job %s: %s will be retried (attempt %d): %s",
                self.job.pk,
                description,
                item.attempts,
                reason,
            )

    def _explain_stop(self):
        """Log why a batch stopped; a job cancelled behind the engine's back (plain SQL)
        gets its counters recounted here."""
        self.stopped.set()
        status = self.claim.jobs.filter(pk=self.job.pk).values_list("status", flat=True).first()
        if status == Status.CANCELLED:
            recount(self.kind, self.job.pk)
            self.log.info("Job %s: cancelled; batch stopped", self.job.pk)
        else:
            self.log.warning(
                "Job %s: claim lost or job no longer running (status %s); batch stopped",
                self.job.pk,
                status,
            )

    def wait(self, reason):
        """A rate limit stopped the batch: the job says what it waits for. Not a pause
        (no pause clock, no ERROR line): the next run goes on when the slot opens."""
        self.summary.waiting[self.job.pk] = reason
        if self.claim.jobs.note_waiting(self.job.pk, self.claim.token, reason):
            self.log.info("Job %s: %s", self.job.pk, reason)

    def _pause(self):
        """The provider refused the batch: the job waits for it, its pause clock running.
        Logged at ERROR once, when the pause begins (the hook for an alert)."""
        cause = self.pause_cause
        self.summary.paused.append(f"job {self.job.pk}: {cause}")
        state = self.claim.jobs.pause(self.job.pk, self.claim.token, cause, timezone.now())
        if state == "started":
            self.log.error("Job %s: %s%s", self.job.pk, PAUSED_PREFIX, cause)
        elif state == "continued":
            self.log.warning("Job %s: still paused: %s", self.job.pk, cause)

    def _finish_if_done(self):
        """Complete the job when no item is left to do. Returns True if it completed it."""
        kind = self.kind
        if kind.item_model.objects.filter(job_id=self.job.pk, status__in=ACTIVE_STATUSES).exists():
            return False
        counts = kind.item_model.objects.counts(self.job.pk)
        failed = counts[Status.FAILED]
        total = sum(counts.values())
        if failed:
            reason = f"{failed} of {total} item(s) failed; see the job's items for reasons."
        else:
            reason = f"All {counts[Status.COMPLETED]} item(s) succeeded."
        if counts[Status.CANCELLED]:
            reason += f" {counts[Status.CANCELLED]} cancelled."
        won = self.claim.jobs.finish(
            self.job.pk, self.claim.token, counts=counts, reason=reason, now=timezone.now()
        )
        if won:
            self.log.info("Job %s completed: %s", self.job.pk, reason)
        return won


# --- counts --------------------------------------------------------------------------


def recount(kind, job_id):
    """Set a job's counters from its items (at job end, after cancel or retry)."""
    counts = kind.item_model.objects.counts(job_id)
    kind.job_model.objects.store_counts(job_id, counts)
    return counts
