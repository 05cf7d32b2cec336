"""What runs and batches report, and a job's counters recounted from its items.

A batch returns a BatchResult to the run that served it; the run adds each batch's
summary to its own RunSummary, whose one-line text the command prints and the
ProcessorRun record keeps.
"""

from dataclasses import dataclass, field

from ..kinds import Outcome

#: The RunSummary counters a batch's summary adds to its run's.
COUNTERS = (
    "batches",
    "items_succeeded",
    "items_failed",
    "items_retried",
    "jobs_completed",
    "jobs_expired",
    "claims_released",
)


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
        for name in COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.paused += other.paused
        self.waiting.update(other.waiting)

    def add_outcomes(self, tally):
        """Add a batch's outcomes ({Outcome.DONE/FAILED/RETRY: count})."""
        self.items_succeeded += tally[Outcome.DONE]
        self.items_failed += tally[Outcome.FAILED]
        self.items_retried += tally[Outcome.RETRY]

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
class BatchResult:
    """What one batch did, for the run that served it."""

    #: the batch's own summary (one batch), added to the run's
    summary: RunSummary
    #: Unix time of the next slot of the rate limit that cut the batch short, if one did
    limited_until: float | None = None
    #: Unix time at which that limit refused
    limited_at: float | None = None
    #: True when that limit was the company's own pace (its next slot is the next
    #: minute's business, not this run's); False for a provider's shared limit
    paced: bool = False
    #: True when a row the batch needed was locked by another transaction (or a statement
    #: ran over its timeout): the batch stopped, its job's counters and end wait for the
    #: row (Run.settle_leftovers)
    locked: bool = False

    @property
    def progress(self):
        """Whether any item was attempted and neither the provider paused the job nor a
        lock stopped the batch: a job paused after some items (a mail server that stopped
        answering) waits for the next run rather than being served again in this one."""
        return self.summary.items_attempted > 0 and not self.summary.paused and not self.locked


def recount(kind, job_id):
    """Set a job's counters from its items (at job end, after cancel or retry)."""
    counts = kind.item_model.objects.counts(job_id)
    kind.job_model.objects.store_counts(job_id, counts)
    return counts
