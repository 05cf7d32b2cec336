"""Cron entry point for wallet sync: one run (or a worker with --loop)."""

from bulkjobs.ops.commands import ProcessJobsCommand


class Command(ProcessJobsCommand):
    help = (
        "Process wallet sync jobs: release stuck claims, expire inactive jobs, then sync one "
        "batch (default 10 cards) for each company with work, one job per company, least "
        "recently served first, until --max-seconds is spent. Each card's Apple pass is "
        "rebuilt, stored and pushed to registered devices over one APNs HTTP/2 connection "
        "per run, and its Google Wallet object updated; unconfigured platforms are skipped. "
        "Interrupted cards are synced again. Run it from cron every minute, or with --loop "
        "as a worker."
    )
    kind_name = "wallet"
