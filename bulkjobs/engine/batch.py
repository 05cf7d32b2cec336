"""One batch of a claimed job: its items fetched and paid for, worked through in lanes,
its counters written once, and the job's end (paused, waiting, completed).

A provider answers each request after a network round trip, so a batch may open several
provider connections (lanes, bulkjobs.engine.items.Lane) at once, each in its own
thread; a lane refused by its provider or limit halts the others before their next
item. What the batch did goes back to the run as a BatchResult.
"""

import time
from concurrent.futures import wait

from django.db import DatabaseError

from .. import reasons
from ..kinds import Outcome
from ..models import ACTIVE_STATUSES, PAUSED_PREFIX, Status
from . import clock, locks, outage
from .activity import record_batch_activity
from .items import Lane, RetryPolicy, Tally, Unwritten
from .summary import BatchResult, RunSummary
from .threads import StopSignal, WorkerThreads, in_worker_thread
from .tokens import BatchTokens, batch_limits

#: A batch gets a second provider connection (lane) only for this many items or more
#: (JobKind.min_items_per_lane(), which a kind may size to its provider's latency).
MIN_ITEMS_PER_LANE = 10


def process_one_batch(
    claim, batch_size, *, limits=None, lanes=1, lane_threads=None, stop=None, unwritten=None
):
    """Process up to batch_size due items of a claimed job, as many as the rate limits
    (see batch_limits(); all of the kind's by default) grant, over up to `lanes`
    provider connections. Returns a BatchResult. `unwritten`, a list, receives what
    the lanes knew but could not write when the database connection dropped."""
    limits = batch_limits(claim.kind) if limits is None else limits
    batch = Batch(
        claim, limits, lanes=lanes, lane_threads=lane_threads, stop=stop, unwritten=unwritten
    )
    return batch.process(batch_size)


class Batch:
    """What a batch's lanes share: the claim, the tokens, the tally, the stop signal and
    why the batch was halted."""

    def __init__(self, claim, limits=(), *, lanes=1, lane_threads=None, stop=None, unwritten=None):
        self.claim = claim
        self.kind = claim.kind
        self.job = claim.job
        self.log = self.kind.logger
        self.tokens = BatchTokens(self.kind, self.job.company_id, limits)
        #: Provider connections (lanes) this batch may open at once.
        self.lanes = lanes
        #: The run's threads for lanes (WorkerThreads); None: the batch starts its own.
        self.lane_threads = lane_threads
        #: Set when a lane halts the batch; also set when the run (or command) stops.
        self.stop = stop.child() if stop is not None else StopSignal()
        self.tally = Tally()
        self.retry = RetryPolicy.from_settings(self.kind)
        #: Why a lane halted the batch: its provider refused it (the job pauses), or
        #: why items wait for one of the kind's providers (Outcome.WAIT; no halt) ...
        self.pause_cause = None
        #: ... or a rate limit had no token left (RateLimited; the job waits) ...
        self.rate_limited = None
        #: ... or a row it needed was locked (the lock or statement timeout's error).
        self.locked = None
        #: Outcomes and marks the lanes could not write (items.Unwritten), for the run.
        self.unwritten = unwritten if unwritten is not None else []

    def halt(self, *, pause_cause=None, rate_limited=None, locked=None):
        """Stop every lane before its next item, for a pause, a rate limit or a lock."""
        if pause_cause is not None:
            self.pause_cause = pause_cause
        if rate_limited is not None:
            self.rate_limited = rate_limited
        if locked is not None:
            self.locked = locked
        self.stop.set()

    def note_waiting(self, cause):
        """An item waits for one of the kind's providers (Outcome.WAIT): the job pauses
        with `cause` at the batch's end, while its lanes go on with the next items."""
        if self.pause_cause is None:
            self.pause_cause = cause

    def keep_unwritten(self, handled, unsent):
        """A lane's database connection dropped, or a statement ran into a lock: keep the
        outcomes it knew (`handled`, (item, Decision) pairs) and the items it had marked,
        or was marking, and not sent (`unsent`)."""
        for item, decision in handled:
            self.unwritten.append(Unwritten(self.claim, item, decision))
        for item in unsent:
            self.unwritten.append(Unwritten(self.claim, item))

    def process(self, batch_size):
        summary = RunSummary(kind=self.kind.name, batches=1)
        try:
            self._process(batch_size, summary)
        except DatabaseError as exc:
            if not locks.is_timeout(exc):
                raise
            self.halt(locked=exc)
        if self.locked is not None:
            # The job's counters and end wait until the row is free: the run recounts the
            # job and releases its claim then (Run.settle_leftovers).
            locks.report_locked(
                self.kind,
                self.job.pk,
                self.locked,
                "its batch stopped; what it did is written once the rows are free",
            )
        limit = self.rate_limited
        return BatchResult(
            summary,
            limited_until=None if limit is None else limit.next_at,
            limited_at=None if limit is None else limit.raised_at,
            paced=self.tokens.paced,
            locked=self.locked is not None,
        )

    def _process(self, batch_size, summary):
        kind, job = self.kind, self.job
        due = kind.item_model.objects.filter(job_id=job.pk).due(clock.now())
        items = list(kind.batch_items(due).order_by(*kind.batch_order())[:batch_size])
        # Tokens are taken for the items fetched, not for batch_size, so none are wasted.
        items = items[: self.tokens.take(len(items))]
        if self.tokens.limited is not None:
            self.rate_limited = self.tokens.limited
        if job.started_at == job.claimed_at:
            self.log.info("Job %s started: %d item(s)", job.pk, job.total_items)
        busy_since = time.monotonic()
        if items:
            self.log.info("Job %s: batch of %d item(s)", job.pk, len(items))
            self._process_lanes(items)
        busy_seconds = time.monotonic() - busy_since
        summary.add_outcomes(self.tally.outcomes)
        self.tokens.refund_unused(self.tally.marked)
        if self.locked is not None:
            return
        if self.tally.attempted:
            self._record_counters(busy_seconds)
        if self.pause_cause is not None:
            self._pause(summary)
        elif self.rate_limited is not None:
            self._wait(summary)
        elif self._finish_if_done():
            summary.jobs_completed += 1

    def _process_lanes(self, items):
        """Work through the items over up to `self.lanes` provider connections at once:
        each lane is a run of consecutive items with a BatchHandler (and so a connection)
        of its own, in its own thread, all under the batch's claim. Small batches, and
        the batches of a paused job, keep one lane."""
        lanes = min(self.lanes, -(-len(items) // self.kind.min_items_per_lane()))
        if self.job.paused_at is not None:
            # A paused job's batch probes its provider over one connection: one that still
            # does not answer (a mail server silent after each message) costs one item,
            # not one per lane. The batch that gets through ends the pause.
            lanes = 1
        if lanes <= 1:
            Lane(self).process(items)
            return
        size = -(-len(items) // lanes)
        first, *others = [items[start : start + size] for start in range(0, len(items), size)]
        # The first lane runs in this thread, on its database connection: a batch of N
        # lanes holds N connections to the database, not N + 1.
        pool = self.lane_threads or WorkerThreads(len(others), f"{self.kind.name}-lane")
        futures = [
            pool.submit(in_worker_thread, self.stop, Lane(self).process, lane) for lane in others
        ]
        try:
            Lane(self).process(first)
        except BaseException:
            self.stop.set()
            raise
        finally:
            wait(futures)
            if pool is not self.lane_threads:
                pool.shutdown()
        errors = [future.exception() for future in futures if future.exception() is not None]
        # A lane whose thread the database refused (it is full) marked nothing: its items
        # stay due, and the run serves fewer at once (Run.connection_refused).
        errors = [error for error in errors if not outage.is_server_full(error)]
        if errors:
            raise errors[0]

    def _record_counters(self, busy_seconds):
        """Add the batch's outcomes to the job's counters, and to the charts' hourly
        totals: one UPDATE and one upsert per batch, not per item."""
        tally, now = self.tally, clock.now()
        self.claim.jobs.record_batch(
            self.job.pk,
            self.claim.token,
            succeeded=tally[Outcome.DONE],
            failed=tally[Outcome.FAILED],
            now=now,
            ends_pause=self.pause_cause is None,
            ends_wait=self.pause_cause is None and self.rate_limited is None,
        )
        record_batch_activity(
            self.job.company_id,
            self.kind.name,
            now,
            processed=tally[Outcome.DONE] + tally[Outcome.FAILED],
            failed=tally[Outcome.FAILED],
            attempts=tally.attempted,
            busy_seconds=busy_seconds,
        )

    def _wait(self, summary):
        """A rate limit stopped the batch: the job says what it waits for. Not a pause
        (no pause clock, no ERROR line): the next run goes on when the slot opens."""
        reason = self.rate_limited.reason
        summary.waiting[self.job.pk] = reason
        if self.claim.jobs.note_waiting(self.job.pk, self.claim.token, reason):
            self.log.info("Job %s: %s", self.job.pk, reason)

    def _pause(self, summary):
        """The provider refused the batch: the job waits for it, its pause clock running.
        Logged at ERROR once, when the pause begins (the hook for an alert)."""
        cause = self.pause_cause
        summary.paused.append(f"job {self.job.pk}: {cause}")
        state = self.claim.jobs.pause(self.job.pk, self.claim.token, cause, clock.now())
        if state == "started":
            self.log.error("Job %s: %s%s", self.job.pk, PAUSED_PREFIX, cause)
        elif state == "continued":
            self.log.warning("Job %s: still paused: %s", self.job.pk, cause)

    def _finish_if_done(self):
        """Complete the job when no item is left to do. Returns True if it completed it."""
        items = self.kind.item_model.objects
        if items.filter(job_id=self.job.pk, status__in=ACTIVE_STATUSES).exists():
            return False
        counts = items.counts(self.job.pk)
        reason = reasons.completed(
            counts[Status.COMPLETED],
            counts[Status.FAILED],
            sum(counts.values()),
            counts[Status.CANCELLED],
        )
        won = self.claim.jobs.finish(
            self.job.pk, self.claim.token, counts=counts, reason=reason, now=clock.now()
        )
        if won:
            self.log.info("Job %s completed: %s", self.job.pk, reason)
        return won
