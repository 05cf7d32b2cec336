"""The job engine, generic over job kinds: runs, claims, batches, rescue, rate limits and
worker threads (docs/architecture.md). These are the names the rest of the project uses.
"""

from .batch import Batch, process_one_batch
from .bookkeeping import note_run_finished
from .claim import Claim, claim_job, claim_next_job, companies_in_fair_order, settle_interrupted
from .rescue import rescue
from .run import Run, run_once
from .summary import BatchResult, RunSummary, recount
from .threads import StopSignal

__all__ = [
    "Batch",
    "BatchResult",
    "Claim",
    "Run",
    "RunSummary",
    "StopSignal",
    "claim_job",
    "claim_next_job",
    "companies_in_fair_order",
    "note_run_finished",
    "process_one_batch",
    "recount",
    "rescue",
    "run_once",
    "settle_interrupted",
]
