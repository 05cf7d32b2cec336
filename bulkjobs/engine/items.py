"""The item pipeline of one lane: a run of a batch's items over one provider connection.

Each item is marked `processing` and committed before its side effect (an email sent, a
pass pushed), so a run killed in between leaves it visible, to be settled by its kind's
interrupted policy, never silently repeated. Its outcome is decided by
bulkjobs.decisions.decide() and written together with the next item's mark, in one
statement where the database allows (ItemQuerySet.record_and_mark), or alone after the
lane's last item. With BULKJOBS_MARK_AHEAD above 1 a lane marks that many items at once,
with the outcomes of the ones before (ItemQuerySet.record_and_mark_many), and gives back
the ones it marked and did not send when it is told to stop. Every write is fenced by
the batch's claim.
"""

import random
import threading
import time
from dataclasses import dataclass, replace

from .. import conf
from ..decisions import Backoff, Schedule, decide
from ..kinds import Outcome, ProviderUnavailable, RateLimited
from ..models import Status
from ..reasons import Reason
from . import clock, locks, outage
from .summary import recount


@dataclass(frozen=True)
class RetryPolicy:
    """The run's settings for transient failures: the attempts allowed and the waits."""

    max_attempts: int
    backoff: Backoff | Schedule

    @classmethod
    def from_settings(cls, kind=None):
        """The kind's retry schedule (JobKind.retry_schedule_setting) when it has one:
        as many attempts as it has waits plus one, fewer if MAX_ATTEMPTS is set lower;
        else MAX_ATTEMPTS with exponential backoff."""
        setting = getattr(kind, "retry_schedule_setting", "")
        waits = conf.get(setting) if setting else None
        if waits:
            schedule = Schedule(waits)
            cap = conf.max_attempts_configured()
            attempts = schedule.max_attempts if cap is None else min(cap, schedule.max_attempts)
            return cls(attempts, schedule)
        return cls(
            conf.get("MAX_ATTEMPTS"),
            Backoff(conf.get("RETRY_BASE_SECONDS"), conf.get("RETRY_MAX_SECONDS")),
        )

    def decide(self, item, outcome):
        """The Decision for an item's outcome (item.attempts includes this attempt). The
        retry limit counts the attempts since a person last retried the item."""
        return decide(
            outcome,
            attempts=item.attempts_this_round,
            max_attempts=self.max_attempts,
            now=clock.now(),
            backoff=self.backoff,
            rng=random,
        )


@dataclass
class Unwritten:
    """What a lane knew but could not write when its database connection dropped: the
    outcome of an item it handled (`decision`), or an item it was marking and had not
    sent (`decision` None). Written, fenced by the claim, once the database answers
    again (Run.release_claims)."""

    claim: object
    item: object
    decision: object = None

    def write(self):
        """Write it if the claim still holds the job; True if it did. An outcome needs its
        item still `processing`; an item not sent is given back (pending, its attempt
        refunded) if its mark got in before the connection dropped."""
        claim, item = self.claim, self.item
        description = claim.kind.describe_item(item)
        if self.decision is not None:
            decision = self.decision
            if claim.record(item.pk, decision.changes(), decision.decided_at):
                claim.kind.logger.info(
                    "Job %s: %s %s; written once the database answered again",
                    claim.job.pk,
                    description,
                    {Outcome.DONE: "succeeded", Outcome.FAILED: "failed"}.get(
                        decision.counted_as, "will be retried"
                    ),
                )
                return True
            return False
        if claim.give_back(item.pk):
            claim.kind.logger.info(
                "Job %s: %s was not sent; given back once the database answered again",
                claim.job.pk,
                description,
            )
            return True
        return False


class Tally:
    """What a batch's lanes (threads) did: outcomes per counter, and items marked."""

    def __init__(self):
        self._lock = threading.Lock()
        self.outcomes = {Outcome.DONE: 0, Outcome.FAILED: 0, Outcome.RETRY: 0, Outcome.WAIT: 0}
        #: items marked `processing` (their rate-limit tokens were used)
        self.marked = 0

    def __getitem__(self, counted_as):
        return self.outcomes[counted_as]

    @property
    def attempted(self):
        """Items whose attempt counted; a wait (Outcome.WAIT) is not one."""
        return sum(n for counted_as, n in self.outcomes.items() if counted_as != Outcome.WAIT)

    def add(self, counted_as):
        with self._lock:
            self.outcomes[counted_as] += 1

    def add_marked(self, count=1):
        """`count` more items marked; a negative count for items given back unsent."""
        with self._lock:
            self.marked += count


class Lane:
    """One lane of a batch (bulkjobs.engine.batch.Batch): its items, one after another,
    through one BatchHandler."""

    def __init__(self, batch):
        self.batch = batch
        self.claim = batch.claim
        self.kind = batch.kind
        self.job = batch.job
        self.log = batch.log
        #: While they are at stake: the (item, Decision) pairs handled but not yet
        #: written, the items marked and not sent, and the items a statement in flight
        #: is marking (see _process_items).
        self._unwritten = ([], [], [])

    def process(self, items):
        """Open a handler (a provider connection) and work through the items; a refusal
        of the whole lane halts the batch with its reason."""
        try:
            with self.kind.open_batch(self.job, items) as handler:
                self._process_items(handler, items)
        except ProviderUnavailable as exc:
            self.batch.halt(pause_cause=str(exc))
        except RateLimited as exc:
            self.batch.halt(rate_limited=exc)
        except Exception as exc:
            if locks.is_timeout(exc):
                # A row another transaction holds: the batch stops, the connection is fine.
                self.batch.halt(locked=exc)
                return
            if outage.is_outage(exc):
                raise  # the command waits for the database; pausing the job needs it too
            # A broken setup (a mistyped mail backend, a template error) must not crash
            # the run for every other company; the job shows why it is waiting.
            self.log.exception("Job %s: the batch could not start", self.job.pk)
            self.batch.halt(pause_cause=Reason("batch_error", reply=f"{type(exc).__name__}: {exc}"))

    def _process_items(self, handler, items):
        """Work through the items; should the database connection drop, what the lane
        knows but has not written yet goes to the run (Batch.keep_unwritten), which
        writes it, fenced, once the database answers again (Run.release_claims). A
        statement that ran into a lock or statement timeout changed nothing, so the items
        it was marking are still pending (and one may be the locked row, which giving it
        back would wait for again): only what the lane knew before it is kept, for the
        run to write once the rows are free (Run.settle_leftovers)."""
        try:
            self._process_each(handler, items)
        except Exception as exc:
            handled, unsent, marking = self._unwritten
            if locks.is_timeout(exc):
                self.batch.keep_unwritten(handled, unsent)
            elif outage.is_outage(exc):
                # The marks may have been committed before the connection dropped.
                self.batch.keep_unwritten(handled, unsent + marking)
            raise

    def _process_each(self, handler, items):
        last_beat = time.monotonic()
        beat_every = conf.heartbeat_seconds()
        stop = self.batch.stop
        ahead = conf.get("MARK_AHEAD")
        # Items handled, with their Decisions, whose outcomes are not written yet: they go
        # in the statement that marks the next items (see _mark), or alone at the end.
        handled = []
        # Items marked `processing` and committed, not yet handled: the rest of a group
        # of MARK_AHEAD items marked together (always empty when it is 1, the default).
        marked = []
        for index, item in enumerate(items):
            if stop.is_set():
                break
            # At stake should the connection drop now: the outcomes handled, and the
            # items marked but not sent.
            self._unwritten = (handled, marked, [])
            if time.monotonic() - last_beat >= beat_every:
                if not self.claim.heartbeat():
                    # The outcomes handled are written all the same (if the claim is
                    # gone, that write says so).
                    if self._settle(handled, marked):
                        self._explain_stop()
                    self._unwritten = ([], [], [])
                    return
                last_beat = time.monotonic()
            if not marked:
                # Mark and commit before the side effect: an interrupted item is then
                # visible as `processing` and is settled by the kind's policy, never
                # silently repeated.
                group = items[index : index + ahead]
                self._unwritten = (handled, [], group)
                if not self._mark(group, handled):
                    self._unwritten = ([], [], [])
                    return
                # The outcomes handled went in with the marks.
                handled, marked = [], group
            marked = marked[1:]  # this item is in hand now
            self._unwritten = (handled, marked, [])
            item.attempts += 1
            try:
                if index + 1 < len(items):
                    handler.announce(items[index + 1])
                outcome = handler.handle(item)
            except (ProviderUnavailable, RateLimited) as exc:
                if self._stop_for_provider(item, exc, handled, marked):
                    raise
                return  # the claim was lost; writing the outcomes stopped the batch
            except Exception as exc:
                if outage.is_outage(exc):
                    raise  # not the item's fault; it stays `processing`, settled on the next claim
                self.log.exception(
                    "Job %s: %s raised an unexpected error",
                    self.job.pk,
                    self.kind.describe_item(item),
                )
                outcome = Outcome.retry(
                    Reason("unexpected_error", reply=f"{type(exc).__name__}: {exc}")
                )
            handled = [*handled, (item, self.decide(item, outcome))]
        self._unwritten = (handled, marked, [])
        self._settle(handled, marked)
        self._unwritten = ([], [], [])

    def _stop_for_provider(self, item, exc, handled, marked):
        """The provider refused or stopped answering while `item` was in hand: write the
        outcomes handled, give back the items marked and not sent, and `item` too unless
        the provider took it (its outcome then stands). False if the claim was lost
        before the provider's outcome could be written."""
        handed_over = getattr(exc, "outcome", None)
        if handed_over is not None:
            handled = [*handled, (item, self.decide(item, handed_over))]
        self._unwritten = (handled, marked, [])
        written = self._settle(handled, marked)
        if handed_over is None:
            # Nothing was done for this item: give it back without spending an attempt.
            self.claim.give_back(item.pk)
        self._unwritten = ([], [], [])
        return written or handed_over is None

    def decide(self, item, outcome):
        """What to write for an item's outcome (item.attempts includes this attempt). A
        wait refunds the attempt, written with the outcome, and pauses the job at the
        batch's end (Batch.note_waiting)."""
        decision = self.batch.retry.decide(item, outcome)
        if decision.counted_as == Outcome.WAIT:
            item.attempts -= 1
            # Absolute, not a delta: the item is `processing` under this claim, so no
            # other writer changes its attempts meanwhile.
            decision = replace(decision, fields={**decision.fields, "attempts": item.attempts})
            self.batch.note_waiting(outcome.reason)
        return decision

    def _mark(self, group, handled):
        """Mark the items of `group` processing, writing the outcomes `handled` before
        them in the same statement. False if the batch must stop: the claim was lost or
        the job stopped running (cancelled, paused), before or between the writes."""
        waits = [entry for entry in handled if entry[1].counted_as == Outcome.WAIT]
        if waits:
            # A wait writes the item's attempts, which the one-statement write sets for
            # the marked rows too: written alone first (waits are rare).
            for entry in waits:
                if not self.record(*entry):
                    return False
            handled = [entry for entry in handled if entry[1].counted_as != Outcome.WAIT]
        records = [(item.pk, decision.changes(), decision.decided_at) for item, decision in handled]
        recorded, marked = self.claim.record_and_mark_many(records, [item.pk for item in group])
        counted = self._count_recorded(handled, recorded)
        if not counted or len(marked) < len(group):
            # Nothing is done for an item in a batch that lost track of its state, nor for
            # one whose group was not marked whole.
            for item in group:
                if item.pk in marked:
                    self.claim.give_back(item.pk)
            if counted:
                self._explain_stop()
            return False
        self.batch.tally.add_marked(len(group))
        return True

    def _settle(self, handled, unsent):
        """Write the outcomes `handled` (one statement) and give back the items `unsent`,
        marked and not sent: pending again, their attempt refunded. True if every
        outcome was written."""
        written = True
        if handled:
            records = [
                (item.pk, decision.changes(), decision.decided_at) for item, decision in handled
            ]
            recorded, _ = self.claim.record_and_mark_many(records, [])
            written = self._count_recorded(handled, recorded)
        for item in unsent:
            if self.claim.give_back(item.pk):
                self.batch.tally.add_marked(-1)
        return written

    def _count_recorded(self, handled, recorded):
        """Tally and log the outcomes written (their ids in `recorded`); False, with the
        batch stopped, if any was not (the claim was lost meanwhile)."""
        missed = None
        for item, decision in handled:
            if item.pk in recorded:
                self._count(item, decision)
            elif missed is None:
                missed = item
        if missed is not None:
            self._warn_not_recorded(missed)
            return False
        return True

    def record(self, item, decision):
        """Commit one item's outcome (its Decision) and note it in the item's attempt_log,
        in one UPDATE; False if the claim was lost meanwhile."""
        if not self.claim.record(item.pk, decision.changes(), decision.decided_at):
            self._warn_not_recorded(item)
            return False
        self._count(item, decision)
        return True

    def _warn_not_recorded(self, item):
        self.batch.stop.set()
        self.log.warning(
            "Job %s: claim lost before recording %s; batch stopped",
            self.job.pk,
            self.kind.describe_item(item),
        )

    def _count(self, item, decision):
        """Tally and log an outcome that was written."""
        self.batch.tally.add(decision.counted_as)
        description = self.kind.describe_item(item)
        if decision.counted_as == Outcome.DONE:
            self.log.info("Job %s: %s succeeded", self.job.pk, description)
        elif decision.counted_as == Outcome.FAILED:
            self.log.warning("Job %s: %s failed: %s", self.job.pk, description, decision.reason)
        elif decision.counted_as == Outcome.WAIT:
            self.log.info("Job %s: %s waits: %s", self.job.pk, description, decision.reason)
        else:
            self.log.info(
                "Job %s: %s will be retried (attempt %d): %s",
                self.job.pk,
                description,
                item.attempts,
                decision.reason,
            )

    def _explain_stop(self):
        """Log why a batch stopped; a job cancelled behind the engine's back (plain SQL)
        gets its counters recounted here. A job paused by a person keeps its counters
        (the batch's outcomes are still written: record_batch() accepts a paused job)."""
        self.batch.stop.set()
        status = self.claim.status()
        if status == Status.CANCELLED:
            recount(self.kind, self.job.pk)
            self.log.info("Job %s: cancelled; batch stopped", self.job.pk)
        elif status == Status.PAUSED:
            self.log.info("Job %s: paused; batch stopped", self.job.pk)
        else:
            self.log.warning(
                "Job %s: claim lost or job no longer running (status %s); batch stopped",
                self.job.pk,
                status,
            )
