"""Queue a finished bulk job's failed items again."""

from django.core.management.base import CommandError

from bulkjobs.kinds import all_kinds, get_kind
from bulkjobs.ops.commands import OperatorCommand
from bulkjobs.ops.services import retry_failed_items


class Command(OperatorCommand):
    help = (
        "Put a completed or failed job's failed items back to pending so the next run retries them."
    )

    def add_arguments(self, parser):
        parser.add_argument("kind", choices=[k.name for k in all_kinds()], help="Job kind.")
        parser.add_argument("job_id", type=int, help="The job's id.")

    def handle(self, *args, **options):
        kind = get_kind(options["kind"])
        job = kind.job_model.objects.filter(pk=options["job_id"]).first()
        if job is None:
            raise CommandError(f"No {kind.name} job with id {options['job_id']}.")
        try:
            result = retry_failed_items(job, by="manage.py retry_job")
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        skipped = f"; {result.skipped_text()}" if result.skipped_total else ""
        if not result.queued:
            self.stdout.write(f"Job {job.pk}: nothing to retry{skipped}.")
        else:
            self.stdout.write(
                f"Job {job.pk}: {result.queued} failed item(s) queued again{skipped}."
            )
