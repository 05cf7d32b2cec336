"""Cancel a pending or processing bulk job and its unfinished items."""

from django.core.management.base import CommandError

from bulkjobs.ops.commands import JobCommand
from bulkjobs.ops.services import Actor, cancel_job


class Command(JobCommand):
    help = (
        "Cancel a pending, processing or paused job (email or wallet) and its unfinished "
        'items. The job shows "Cancelled by command cancel_job".'
    )

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument(
            "--reason", default="Cancelled by admin", help="Reason shown on the job."
        )

    def handle(self, *args, **options):
        kind, job = self.job_from(options)
        cancelled = cancel_job(job, by=Actor.command("cancel_job"), reason=options["reason"])
        if cancelled is None:
            raise CommandError(
                f"Job {job.pk} is {job.status}; only pending, processing or paused jobs can be "
                "cancelled."
            )
        self.stdout.write(f"Cancelled {kind.name} job {job.pk}: {cancelled} item(s) cancelled.")
