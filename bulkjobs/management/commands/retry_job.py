"""Queue a finished bulk job's failed items again."""

from django.core.management.base import CommandError

from bulkjobs.ops.commands import JobCommand
from bulkjobs.ops.services import LEAVE_UNKNOWN, WITH_UNKNOWN, Actor, retry_failed_items


class Command(JobCommand):
    help = (
        "Put a completed or failed job's failed items back to pending so the next run retries "
        "them. Items whose delivery is unknown (an email the mail server may already have "
        "delivered) stay failed unless --include-unknown is given."
    )

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument(
            "--include-unknown",
            action="store_true",
            help=(
                "Also retry the items whose delivery is unknown. Their recipients may already "
                "have the email: retrying may send it twice. Check the mail server's log first."
            ),
        )

    def handle(self, *args, **options):
        kind, job = self.job_from(options)
        unknown = WITH_UNKNOWN if options["include_unknown"] else LEAVE_UNKNOWN
        try:
            result = retry_failed_items(job, by=Actor.command("retry_job"), unknown=unknown)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        left = result.left_failed_text()
        left = f"; {left}" if left else ""
        if result.unknown_left:
            left += " (--include-unknown retries them too; they may be sent twice)"
        if not result.queued:
            self.stdout.write(f"Job {job.pk}: nothing to retry{left}.")
            return
        unknown_queued = (
            f", {result.unknown_queued} of them with delivery unknown (they may be sent twice)"
            if result.unknown_queued
            else ""
        )
        self.stdout.write(
            f"Job {job.pk}: {result.queued} failed item(s) queued again{unknown_queued}{left}."
        )
