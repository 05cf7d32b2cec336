"""One run of a processing command for a job kind, generic over kinds.

A run notes itself (and forgives any gap in which no processor ran), rescues what no
live run will finish (bulkjobs.engine.rescue), then serves companies least recently
served first, several at once: for each, claim a job, settle what a dead run left,
process one batch, release, move on, until the time budget is spent. See
docs/architecture.md, "One run of a processing command".

The run owns the claims it holds: a caller whose run was cut short by a lost database
connection gives them back with Run.release_claims() once the database answers again. A
batch stopped by a row another transaction holds (engine/locks.py) leaves its claim to
the end of the run, which writes what the batch knew, recounts the job and releases it
once the rows are free (Run.settle_leftovers); what is still locked then goes to the
worker's next run.

A database server that is full refuses a worker thread its connection: the run serves
fewer companies at once from then on and carries on with the connections it has
(Run.connection_refused); a worker's Concurrency (turns.py) remembers that for its next
runs.
"""

import threading
import time
from concurrent.futures import FIRST_COMPLETED, wait

from django.db import DatabaseError

from .. import conf
from . import clock, locks, outage
from .batch import process_one_batch
from .bookkeeping import evaluate_alerts, note_run_finished, note_run_started
from .claim import claim_job, companies_in_fair_order, new_token, settle_interrupted
from .rescue import rescue
from .summary import RunSummary, recount
from .threads import StopSignal, WorkerThreads, in_worker_thread, warm_url_resolver
from .tokens import batch_limits, companies_with_tokens
from .turns import ConnectionShares, Turns, companies


def run_once(kind, **options):
    """Do one run for a job kind and return its RunSummary (options: see Run)."""
    return Run(kind, **options).execute()


def within_connection_limit(kind, concurrency, lanes):
    """(companies at once, provider connections per batch) that keep concurrency x lanes
    within the kind's max_connections (the relay's limit per client): fewer lanes per
    batch first, down to one, then fewer companies at once."""
    limit = kind.max_connections
    if limit is None or concurrency * lanes <= limit:
        return concurrency, lanes
    lanes = max(1, limit // concurrency)
    return max(1, min(concurrency, limit // lanes)), lanes


class Run:
    """One run: its budget, its summary, the claims it holds and the worker threads.

    Companies are served least recently served first, up to `concurrency` at once (each
    in its own thread, with its own claim and database connection), one batch at a time,
    each batch over up to `connections` provider connections (default: the kind's); a
    company whose batch made progress queues up again behind the others, while time
    remains (see serve_all). `stop` is the caller's stop signal (SIGTERM): the run's own
    is its child, also set when a worker thread fails, and each batch's is the run's.
    `owner` is the command's worker Registration (engine/workers.py): the claims the run
    takes are its; without one (a test calling run_once) only the stuck rule frees them.
    """

    def __init__(
        self,
        kind,
        *,
        batch_size=None,
        max_seconds=None,
        company_ids=None,
        concurrency=None,
        connections=None,
        stop=None,
        owner=None,
    ):
        conf.validate()
        self.kind = kind
        self.batch_size = batch_size or kind.default_batch_size
        self.max_seconds = max_seconds or conf.get("MAX_SECONDS")
        self.company_ids = company_ids
        self.concurrency, lanes = within_connection_limit(
            kind, concurrency or kind.default_concurrency, connections or kind.connections_per_batch
        )
        #: Worker threads the database refused a connection because it was full.
        self.refused = 0
        #: When the run last served fewer at once (connection_refused; monotonic).
        self._lowered_at = float("-inf")
        #: The threads serving companies, while serve_all runs.
        self._pool = None
        self.stop = stop.child() if stop is not None else StopSignal()
        self.owner = owner
        #: The database server's identity when the run started (engine/clock.py).
        self.database = ""
        self.deadline = time.monotonic() + self.max_seconds
        self.summary = RunSummary(kind=kind.name)
        self.limits = batch_limits(kind)
        self._lock = threading.Lock()
        #: Tokens of the claims the run may hold: a token is added before its claiming
        #: UPDATE (if the connection drops while it runs, nobody knows whether it won,
        #: and releasing a token that was never stored changes nothing) and dropped once
        #: its claim is released.
        self._held = set()
        #: What lanes knew but could not write when the database connection dropped, or a
        #: row was locked (items.Unwritten): written by release_claims() once the database
        #: answers, or by settle_leftovers() once the rows are free.
        self.unwritten = []
        #: Claims (token -> Claim) a lock kept from being settled and released: their
        #: batch stopped on a locked row, or the release itself found the row locked.
        self.leftovers = {}
        self._served = set()
        self.turns = Turns()
        self.connections = ConnectionShares(self.concurrency, lanes)
        #: Threads for the lanes of every batch of the run beyond each batch's first,
        #: which runs in the thread serving the company.
        self.lane_threads = WorkerThreads(
            max(1, self.connections.total - 1),
            f"{kind.name}-lane",
            on_refused=self.connection_refused,
        )

    def execute(self):
        """Note the run, rescue, serve companies, note its end, send the alerts due.
        Returns the RunSummary."""
        self.deadline = time.monotonic() + self.max_seconds
        locks.apply_session_timeouts()
        self.database = clock.sync().identity
        if self.owner is not None:
            self.owner.ensure()
            self._take_over(*self.owner.take_leftovers())
        last_starts = note_run_started(self.kind)
        rescue(self.kind, self.summary)
        try:
            self.serve_all()
        finally:
            self.kind.after_run()
        if self.leftovers:
            self.settle_leftovers()
            if self.leftovers and self.owner is not None:
                self.owner.keep_leftovers(self.leftovers, self.unwritten)
        note_run_finished(self.kind, self.summary)
        evaluate_alerts(self.kind, self.summary, last_starts)
        return self.summary

    @property
    def held_claims(self):
        """The tokens of the claims the run may still hold (a copy)."""
        with self._lock:
            return set(self._held)

    def release_claims(self):
        """Write what the run knew but could not write, then release the jobs it may still
        hold; returns how many it held. For a run cut short by a lost database
        connection: an item whose outcome it knew gets it (so a restart leaves no item
        "unknown" that the worker could tell), one it had not sent goes back to pending,
        and only an item lost in flight is left `processing`, to be settled by the
        kind's interrupted policy when its job is next claimed."""
        self.write_unwritten()
        if self.database_changed():
            # A failover: the next run's start releases every claim from before it and
            # keeps what this run's batches may have sent in the lag from being sent
            # again (engine/bookkeeping.py); released here, those jobs would look as if
            # nobody had been at them.
            return 0
        tokens = self.held_claims
        released = self.kind.job_model.objects.release_tokens(tokens)
        with self._lock:
            self._held -= tokens
            for token in tokens:
                self.leftovers.pop(token, None)
        return released

    def settle_leftovers(self):
        """For each claim a lock kept from being settled (self.leftovers), once its rows
        are free: write what its lanes knew, recount its job and release it. A statement
        that runs into a timeout again leaves that claim for later (the worker's next
        run). Returns how many claims it released."""
        released = 0
        for token, claim in list(self.leftovers.items()):
            entries = [entry for entry in self.unwritten if entry.claim.token == token]
            try:
                for entry in entries:
                    entry.write()
                    self.unwritten.remove(entry)
                recount(self.kind, claim.job.pk)
                claim.release()
            except DatabaseError as exc:
                if not locks.is_timeout(exc):
                    raise
                locks.report_locked(
                    self.kind, claim.job.pk, exc, "its claim is released by a later run"
                )
                continue
            with self._lock:
                self.leftovers.pop(token)
            self._let_go(token)
            released += 1
        return released

    def _take_over(self, leftovers, unwritten):
        """Adopt the leftovers of the worker's previous run, to be settled by this one."""
        if not leftovers:
            return
        with self._lock:
            self.leftovers.update(leftovers)
            self._held |= set(leftovers)
        self.unwritten.extend(unwritten)

    def database_changed(self):
        """Whether another database server answers now than when the run started (a
        standby was promoted meanwhile). One query."""
        now = clock.sync().identity
        return bool(self.database and now and now != self.database)

    def write_unwritten(self):
        """Write, fenced, what the lanes could not (items.Unwritten); counters of the jobs
        concerned are recounted from their items. Returns how many were written."""
        written, jobs = 0, set()
        for entry in list(self.unwritten):
            written += entry.write()
            # Only once written (or refused by its fence): should the connection drop
            # again, the next try of the command writes what is left.
            self.unwritten.remove(entry)
            jobs.add(entry.claim.job.pk)
        for job_pk in jobs:
            recount(self.kind, job_pk)
        return written

    def over(self):
        return self.stop.is_set() or time.monotonic() >= self.deadline

    def connection_refused(self, exc, started):
        """A worker thread (serving a company, or a lane of a batch) got no database
        connection because the server is full; its task did nothing (the company is
        served again, a lane's items stay due). Called in that thread.

        The run serves half as many companies at once from now on, then one fewer each
        time it is refused again (at least one; at one, with one provider connection per
        batch), carrying on with the connections it holds. Threads refused together lower
        it once: one whose task started before the last lowering was refused under the
        former numbers.
        """
        with self._lock:
            self.refused += 1
            if started < self._lowered_at:
                return
            before, lanes_before = self.concurrency, self.connections.per_batch
            if before > 1:
                first = self._lowered_at == float("-inf")
                concurrency, lanes = (max(1, before // 2) if first else before - 1), lanes_before
            elif lanes_before > 1:
                concurrency, lanes = 1, 1
            else:
                return
            self.concurrency = concurrency
            self._lowered_at = time.monotonic()
            self.connections.lower(concurrency, lanes)
            self.lane_threads.shrink(max(1, self.connections.total - 1))
            if self._pool is not None:
                # One company at a time is served in the run's own thread (serve_all).
                self._pool.shrink(concurrency if concurrency > 1 else 0)
        if concurrency < before:
            self.kind.logger.warning(
                "Database full: serving %s at once instead of %d (%s)",
                companies(concurrency),
                before,
                outage.describe(exc),
            )
        else:
            self.kind.logger.warning(
                "Database full: one provider connection per batch instead of %d (%s)",
                lanes_before,
                outage.describe(exc),
            )

    def fair_order(self):
        return companies_in_fair_order(self.kind, self.company_ids)

    def with_tokens(self, companies, pace_tokens=1):
        """The companies that may be served now, in their order: not resting after a
        limit stopped their batch in this run, and with tokens (tokens.py). One query,
        none when no limit is set."""
        companies = self.turns.rested(companies)
        return companies_with_tokens(self.kind, self.limits, companies, pace_tokens)

    def serve_all(self):
        """Serve companies, one batch at a time, until the budget is spent or nothing more
        can be done now.

        Up to `concurrency` companies are served at once, and a free worker takes the
        next company at once: nobody waits for the slowest batch of a round. A company
        whose batch made progress queues up again behind the others if its buckets still
        have tokens; one that made none (nothing due, limited, held by another run) is
        not served again in this run, except one that a provider's shared limit stopped:
        it goes on once the limit's next slot opens, if that is within the budget (see
        Turns.after_batch). When the queue runs dry the fair order is read again, for
        companies whose jobs appeared meanwhile. The first company is served even when
        the budget is spent, so a slow rescue can never starve every company.
        """
        first_order = self.fair_order()
        if not first_order:
            return
        warm_url_resolver()  # before the threads that build messages start
        # A company whose pace bucket is empty would be claimed and released for nothing
        # (and say so in the log, run after run); one query tells which.
        turns = self.turns
        turns.queue.extend(self.with_tokens(first_order))
        futures = {}
        errors = []
        first = True
        # One company (or a concurrency of 1) is served in this thread: no threads start.
        workers = min(self.concurrency, len(turns))
        pool = None
        if workers > 1:
            pool = WorkerThreads(
                workers, f"{self.kind.name}-run", on_refused=self.connection_refused
            )
        self._pool = pool
        try:
            while True:
                self.connections.companies_left = len(turns) + len(futures)
                while len(futures) < min(workers, self.concurrency) and (first or not self.over()):
                    company_id = turns.next(in_flight=futures.values())
                    if company_id is None:
                        break
                    if pool is None or self.concurrency == 1:
                        # On this thread's connection: a run the database refused
                        # threads (it is full) ends up here, one company at a time.
                        self._after_batch(company_id, self.serve(company_id))
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
                        error = future.exception()
                        if error is None:
                            self._after_batch(company_id, future.result())
                        elif outage.is_server_full(error):
                            # Its thread got no connection, so nothing was claimed: the
                            # company is served next, by a thread that has one.
                            turns.queue.appendleft(company_id)
                        else:
                            errors.append(error)
                    continue
                # Nothing in flight, and the queue is empty (or the budget spent).
                if self.over():
                    break
                fresh = turns.fresh(self.fair_order())
                turns.queue.extend(self.with_tokens(fresh) if fresh else [])
                if not turns and turns.wake(self._sleep_until):
                    continue
                if not turns:
                    break
        finally:
            self._pool = None
            if pool is not None:
                pool.shutdown()
            self.lane_threads.shutdown()
        if errors:
            raise errors[0]

    def _after_batch(self, company_id, progress):
        self.turns.after_batch(
            company_id,
            progress,
            seconds_left=self.deadline - time.monotonic(),
            has_a_batch_of_tokens=lambda c: self.with_tokens([c], pace_tokens=self.batch_size),
        )

    def _sleep_until(self, unix_time):
        """Wait for a limit's next slot, but no longer than the run may last."""
        while clock.time() < unix_time and not self.over():
            time.sleep(min(0.2, max(0.0, unix_time - clock.time())))

    def serve(self, company_id):
        """Claim a job of the company, process one batch, release. True if any item was
        attempted."""
        token = new_token()
        with self._lock:
            self._held.add(token)
        owner = self.owner.id if self.owner is not None else None
        try:
            claim = claim_job(self.kind, company_id, token, owner)
        except Exception as exc:
            if outage.is_server_full(exc):
                # Refused a connection: the claiming UPDATE never ran.
                self._let_go(token)
            raise
        if claim is None:
            self._let_go(token)
            return False
        summary = RunSummary(kind=self.kind.name, batches=1)
        lanes = self.connections.take()
        locked = outage_under_batch = False
        try:
            try:
                settle_interrupted(claim)
            except DatabaseError as exc:
                if not locks.is_timeout(exc):
                    raise
                locks.report_locked(
                    self.kind, claim.job.pk, exc, "its company is passed over in this run"
                )
                return False
            result = process_one_batch(
                claim,
                self.batch_size,
                limits=self.limits,
                lanes=lanes,
                lane_threads=self.lane_threads,
                stop=self.stop,
                unwritten=self.unwritten,
            )
            summary = result.summary
            locked = result.locked
            self.turns.limited(company_id, result)
            return result.progress
        except BaseException as exc:
            # The database went away (or its disk filled) under the batch: the claim is
            # released by release_claims() once the database answers, after what the
            # lanes knew is written. Released now, it could get in first (a full disk
            # may take a small write and refuse the next), and the outcomes the lanes
            # kept would be refused by their fence.
            outage_under_batch = outage.is_outage(exc)
            raise
        finally:
            self.connections.give_back(lanes)
            if locked:
                # Its rows are still locked: settled at the end of the run.
                with self._lock:
                    self.leftovers[token] = claim
            elif not outage_under_batch:
                self._release(claim)
            with self._lock:
                self.summary.add(summary)
                self._served.add(company_id)
                self.summary.companies_served = len(self._served)

    def _release(self, claim):
        """Release a claim after its batch; one whose row is locked is kept for
        settle_leftovers()."""
        try:
            claim.release()
        except DatabaseError as exc:
            if not locks.is_timeout(exc):
                raise
            with self._lock:
                self.leftovers[claim.token] = claim
            return
        self._let_go(claim.token)

    def _let_go(self, token):
        with self._lock:
            self._held.discard(token)
