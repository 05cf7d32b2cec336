"""Resume a bulk job that `pause_job` (or a person in the app or admin) paused."""

from django.core.management.base import CommandError

from bulkjobs.kinds import all_kinds, get_kind
from bulkjobs.ops.commands import OperatorCommand
from bulkjobs.ops.services import Actor, resume_job


class Command(OperatorCommand):
    help = (
        "Resume a paused job (email or wallet): the next processing run goes on with its "
        "items not yet done. A job waiting for its provider (mail server down) is not "
        "paused in this sense; it is retried by every run on its own."
    )

    def add_arguments(self, parser):
        parser.add_argument("kind", choices=[k.name for k in all_kinds()], help="Job kind.")
        parser.add_argument("job_id", type=int, help="The job's id.")

    def handle(self, *args, **options):
        kind = get_kind(options["kind"])
        job = kind.job_model.objects.filter(pk=options["job_id"]).first()
        if job is None:
            raise CommandError(f"No {kind.name} job with id {options['job_id']}.")
        if not resume_job(job, by=Actor.command("resume_job")):
            raise CommandError(f"Job {job.pk} is {job.status}; only paused jobs can be resumed.")
        left = job.total_items - job.processed_items
        self.stdout.write(f"Resumed {kind.name} job {job.pk}: {left} item(s) left to do.")
