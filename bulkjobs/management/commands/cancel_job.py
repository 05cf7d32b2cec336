"""Cancel a pending or processing bulk job and its unfinished items."""

from django.core.management.base import CommandError

from bulkjobs.kinds import all_kinds, get_kind
from bulkjobs.ops.commands import OperatorCommand
from bulkjobs.ops.services import Actor, cancel_job


class Command(OperatorCommand):
    help = (
        "Cancel a pending, processing or paused job (email or wallet) and its unfinished "
        'items. The job shows "Cancelled by command cancel_job".'
    )

    def add_arguments(self, parser):
        parser.add_argument("kind", choices=[k.name for k in all_kinds()], help="Job kind.")
        parser.add_argument("job_id", type=int, help="The job's id.")
        parser.add_argument(
            "--reason", default="Cancelled by admin", help="Reason shown on the job."
        )

    def handle(self, *args, **options):
        kind = get_kind(options["kind"])
        job = kind.job_model.objects.filter(pk=options["job_id"]).first()
        if job is None:
            raise CommandError(f"No {kind.name} job with id {options['job_id']}.")
        cancelled = cancel_job(job, by=Actor.command("cancel_job"), reason=options["reason"])
        if cancelled is None:
            raise CommandError(
                f"Job {job.pk} is {job.status}; only pending, processing or paused jobs can be "
                "cancelled."
            )
        self.stdout.write(f"Cancelled {kind.name} job {job.pk}: {cancelled} item(s) cancelled.")
