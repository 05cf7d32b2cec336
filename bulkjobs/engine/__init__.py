"""The job engine: runs, claims, batches, rescue, rate limits and worker threads."""

from .run import (
    Batch,
    Claim,
    RunSummary,
    claim_job,
    claim_next_job,
    companies_in_fair_order,
    note_run_finished,
    process_one_batch,
    recount,
    release,
    release_claims,
    rescue,
    run_once,
    settle_interrupted,
)

__all__ = [
    "Batch",
    "Claim",
    "RunSummary",
    "claim_job",
    "claim_next_job",
    "companies_in_fair_order",
    "note_run_finished",
    "process_one_batch",
    "recount",
    "release",
    "release_claims",
    "rescue",
    "run_once",
    "settle_interrupted",
]
