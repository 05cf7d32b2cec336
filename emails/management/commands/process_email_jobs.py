"""Cron entry point for bulk email: one run (or a worker with --loop)."""

from bulkjobs.ops.commands import ProcessJobsCommand


class Command(ProcessJobsCommand):
    help = (
        "Process bulk email jobs: release stuck claims, expire inactive jobs, then send one "
        "batch (default 50 emails) for each company with work, one job per company, "
        "least recently served first, until --max-seconds is spent. Run it from cron "
        "every minute, or with --loop as a worker."
    )
    kind_name = "email"
