"""Within one run: whose turn it is next, and how many provider connections a batch gets;
across a worker's runs: how many companies at once.

A run serves companies one batch at a time. Turns keeps the companies queued for a batch,
those waiting for a provider limit's next slot, and those done for this run;
ConnectionShares divides the run's provider connections among the batches in flight;
Concurrency carries a lowered concurrency (the database was full) from one run of a
worker to the next. All bookkeeping only: nothing here touches the database.
"""

import threading
from collections import deque

from . import clock, outage


class Turns:
    """The companies of one run: queued for a batch now, waiting for a provider limit's
    next slot (`later`), or done for this run (`done`)."""

    def __init__(self):
        self.queue = deque()
        #: Served without progress in this run, or waiting for a limit: not again.
        self.done = set()
        #: (Unix time, company id) of companies waiting for a provider's next slot.
        self.later = []
        #: company id -> Unix time of the next slot of the limit that stopped its batch
        self._resting = {}
        #: company id -> Unix time after which a batch a provider's limit stopped may go on
        #: (only a slot that was still ahead when the limit refused: one that was open
        #: already yet refused is not waited for again)
        self._retry_at = {}

    def __len__(self):
        return len(self.queue)

    def next(self, in_flight):
        """The next company to serve, skipping those done or being served; None when the
        queue is empty."""
        while self.queue:
            company_id = self.queue.popleft()
            if company_id not in self.done and company_id not in in_flight:
                return company_id
        return None

    def limited(self, company_id, result):
        """Note that a rate limit cut the company's batch (a BatchResult) short: it rests
        until the limit's next slot, and a provider's limit (not its own pace) may let it
        go on within this run."""
        if result.limited_until is not None:
            self._resting[company_id] = result.limited_until
            if not result.paced and result.limited_until > result.limited_at:
                self._retry_at[company_id] = result.limited_until

    def rested(self, companies):
        """The companies not resting after a limit stopped their batch in this run."""
        now = clock.time()
        return [c for c in companies if self._resting.get(c, 0) <= now]

    def after_batch(self, company_id, progress, seconds_left, has_a_batch_of_tokens):
        """After a company's batch: waiting for a provider's next slot if its limit
        stopped the batch and the slot opens within the `seconds_left` of the budget (a
        slot that opened while the batch was winding down is queued at once, see wake());
        back in the queue if it made progress and has_a_batch_of_tokens(company_id) (a
        query, asked only then); else done for this run."""
        retry_at = self._retry_at.pop(company_id, None)
        if retry_at is not None and retry_at - clock.time() < seconds_left:
            self.later.append((retry_at, company_id))
        elif progress and has_a_batch_of_tokens(company_id):
            # Again in this run only with a whole batch's worth of pace: the pace is spent
            # in batches, as the original's 50 per minute, not trickled out one by one.
            self.queue.append(company_id)
        else:
            self.done.add(company_id)

    def fresh(self, companies):
        """Of the companies in the fair order now, those not yet seen: neither done nor
        waiting for a slot (jobs that appeared during the run)."""
        waiting = {company_id for _at, company_id in self.later}
        return [c for c in companies if c not in self.done and c not in waiting]

    def wake(self, sleep_until):
        """With nothing queued: sleep_until() the earliest slot of those waiting, then
        queue every company whose slot has opened. False if none was waiting."""
        if not self.later:
            return False
        self.later.sort()
        sleep_until(self.later[0][0])
        while self.later and self.later[0][0] <= clock.time():
            self.queue.append(self.later.pop(0)[1])
        return True


class ConnectionShares:
    """Provider connections (lanes) the run may hold at once, shared out among the batches
    in flight: each gets at least the kind's connections per batch, and when fewer
    companies are left than workers, the few get the connections the others left."""

    def __init__(self, concurrency, per_batch):
        self.concurrency = concurrency
        self.per_batch = per_batch
        self.total = concurrency * per_batch
        #: Companies queued or being served in this run (kept by Run.serve_all).
        self.companies_left = 1
        self._lock = threading.Lock()
        self._in_use = 0
        self._batches = 0

    def take(self):
        """How many connections the next batch may open: its share of those free, never
        fewer than the kind's connections per batch."""
        with self._lock:
            self._batches += 1
            free = self.total - self._in_use
            # Batches that may still start beside this one, besides those in flight.
            starting = min(self.concurrency, self.companies_left) - self._batches + 1
            share = max(self.per_batch, free // max(1, starting))
            self._in_use += share
            return share

    def give_back(self, share):
        with self._lock:
            self._batches -= 1
            self._in_use -= share

    def lower(self, concurrency, per_batch):
        """Fewer batches at once, or fewer connections each, from now on (the database
        is full); batches in flight keep theirs."""
        with self._lock:
            self.concurrency = concurrency
            self.per_batch = per_batch
            self.total = concurrency * per_batch


def companies(count):
    return f"{count} compan{'y' if count == 1 else 'ies'}"


class Concurrency:
    """How many companies a worker's runs serve at once, and over how many provider
    connections each (--loop, --until-empty): as configured, lowered by a run the database
    refused connections because it was full (or by such an outage), then raised step by
    step, one per run that served companies without refusal, back to the configured
    values (an idle run says nothing of the room the database has)."""

    def __init__(self, kind, concurrency=None):
        self.log = kind.logger
        self.configured = concurrency or kind.default_concurrency
        self.configured_lanes = kind.connections_per_batch
        self.concurrency = self.configured
        self.lanes = self.configured_lanes

    @property
    def options(self):
        """Run options."""
        return {"concurrency": self.concurrency, "connections": self.lanes}

    def after_run(self, run):
        if run.refused:
            self.concurrency = min(self.concurrency, run.concurrency)
            self.lanes = min(self.lanes, run.connections.per_batch)
            return
        if (self.concurrency, self.lanes) == (self.configured, self.configured_lanes):
            return
        if not run.summary.batches:
            return
        if self.lanes < self.configured_lanes:
            self.lanes = self.configured_lanes
        else:
            self.concurrency += 1
        if (self.concurrency, self.lanes) == (self.configured, self.configured_lanes):
            self.log.info(
                "The database has room again: serving up to %d companies at once",
                self.configured,
            )

    def after_outage(self, exc, run=None):
        """A run (None: not made yet) ended for a lost or refused database connection:
        if the server was full, the next run serves half as many companies at once."""
        if run is not None and run.refused:
            self.after_run(run)
        if not outage.is_server_full(exc) or self.concurrency == 1:
            return
        before, self.concurrency = self.concurrency, max(1, self.concurrency // 2)
        self.log.warning(
            "Database full: serving %s at once instead of %d", companies(self.concurrency), before
        )
