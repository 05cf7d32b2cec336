"""One run of a processing command for a job kind, generic over kinds.

A run notes itself (and forgives any gap in which no processor ran), rescues what no
live run will finish (bulkjobs.engine.rescue), then serves companies least recently
served first, several at once: for each, claim a job, settle what a dead run left,
process one batch, release, move on, until the time budget is spent. See
docs/architecture.md, "One run".

The run owns the claims it holds: a caller whose run was cut short by a lost database
connection gives them back with Run.release_claims() once the database answers again.
"""

import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, wait

from .. import conf
from .batch import process_one_batch
from .bookkeeping import evaluate_alerts, note_run_finished, note_run_started
from .claim import claim_next_job, companies_in_fair_order, new_token
from .rescue import rescue
from .summary import RunSummary
from .threads import StopSignal, WorkerThreads, in_worker_thread
from .tokens import batch_limits, companies_with_tokens


def run_once(kind, **options):
    """Do one run for a job kind and return its RunSummary (options: see Run)."""
    return Run(kind, **options).execute()


class Run:
    """One run: its budget, its summary, the claims it holds and the worker threads.

    Companies are served least recently served first, up to `concurrency` at once (each
    in its own thread, with its own claim and database connection), one batch at a time;
    a company whose batch made progress queues up again behind the others, while time
    remains (see serve_all). `stop` is the caller's stop signal (SIGTERM): the run's own
    is its child, also set when a worker thread fails, and each batch's is the run's.
    """

    def __init__(
        self,
        kind,
        *,
        batch_size=None,
        max_seconds=None,
        company_ids=None,
        concurrency=None,
        stop=None,
    ):
        conf.validate()
        self.kind = kind
        self.batch_size = batch_size or kind.default_batch_size
        self.max_seconds = max_seconds or conf.get("MAX_SECONDS")
        self.company_ids = company_ids
        self.concurrency = concurrency or kind.default_concurrency
        self.stop = stop.child() if stop is not None else StopSignal()
        self.deadline = time.monotonic() + self.max_seconds
        self.summary = RunSummary(kind=kind.name)
        self.limits = batch_limits(kind)
        self._lock = threading.Lock()
        #: Tokens of the claims the run may hold: a token is added before its claiming
        #: UPDATE (if the connection drops while it runs, nobody knows whether it won,
        #: and releasing a token that was never stored changes nothing) and dropped once
        #: its claim is released.
        self._held = set()
        # Provider connections the run may hold at once, shared out among the batches in
        # flight: each gets at least the kind's connections per batch, and when fewer
        # companies are left than workers, the few get the connections the others left.
        self._connections = self.concurrency * kind.connections_per_batch
        self._connections_in_use = 0
        self._batches_in_flight = 0
        #: Companies queued or being served in this run (kept by serve_all).
        self.companies_left = 1
        self._served = set()
        #: company id -> Unix time of the next slot of the limit that stopped its batch
        self._resting = {}
        #: company id -> Unix time after which a batch a provider's limit stopped may go on
        self._retry_at = {}
        #: Threads for the lanes of every batch of the run beyond each batch's first,
        #: which runs in the thread serving the company.
        self.lane_threads = WorkerThreads(max(1, self._connections - 1), f"{kind.name}-lane")

    def execute(self):
        """Note the run, rescue, serve companies, note its end, send the alerts due.
        Returns the RunSummary."""
        self.deadline = time.monotonic() + self.max_seconds
        last_starts = note_run_started(self.kind)
        rescue(self.kind, self.summary)
        self.serve_all()
        note_run_finished(self.kind, self.summary)
        evaluate_alerts(self.kind, self.summary, last_starts)
        return self.summary

    @property
    def held_claims(self):
        """The tokens of the claims the run may still hold (a copy)."""
        with self._lock:
            return set(self._held)

    def release_claims(self):
        """Release the jobs the run may still hold; returns how many it held. For a run
        cut short by a lost database connection: its items left `processing` are settled
        by the kind's interrupted policy when their job is next claimed."""
        tokens = self.held_claims
        released = self.kind.job_model.objects.release_tokens(tokens)
        with self._lock:
            self._held -= tokens
        return released

    def over(self):
        return self.stop.is_set() or time.monotonic() >= self.deadline

    def fair_order(self):
        return companies_in_fair_order(self.kind, self.company_ids)

    def with_tokens(self, companies, pace_tokens=1):
        """The companies that may be served now, in their order: not resting after a
        limit stopped their batch in this run, and with tokens (tokens.py). One query,
        none when no limit is set."""
        now = time.time()
        companies = [c for c in companies if self._resting.get(c, 0) <= now]
        return companies_with_tokens(self.kind, self.limits, companies, pace_tokens)

    def serve_all(self):
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
        queue = deque(self.fair_order())
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
                            pool.submit(in_worker_thread, self.stop, self.serve, company_id)
                        ] = company_id
                    first = False
                if futures:
                    # wait() blocks on an Event, which a signal (SIGTERM) can interrupt, so
                    # the stop signal is set while the workers finish their current items.
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
                fresh = [c for c in self.fair_order() if c not in done and c not in waiting]
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
        token = new_token()
        with self._lock:
            self._held.add(token)
        claim = claim_next_job(self.kind, company_id, token)
        if claim is None:
            self._let_go(token)
            return False
        summary = RunSummary(kind=self.kind.name, batches=1)
        lanes = self._take_connections()
        try:
            result = process_one_batch(
                claim,
                self.batch_size,
                limits=self.limits,
                lanes=lanes,
                lane_threads=self.lane_threads,
                stop=self.stop,
            )
            summary = result.summary
            if result.limited_until is not None:
                self._resting[company_id] = result.limited_until
                if not result.paced:
                    self._retry_at[company_id] = result.limited_until
            return result.progress
        finally:
            self._give_back_connections(lanes)
            claim.release()
            self._let_go(token)
            with self._lock:
                self.summary.add(summary)
                self._served.add(company_id)
                self.summary.companies_served = len(self._served)

    def _let_go(self, token):
        with self._lock:
            self._held.discard(token)
