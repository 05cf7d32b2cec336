"""Resume a bulk job that `pause_job` (or a person in the app or admin) paused."""

from django.core.management.base import CommandError

from bulkjobs.ops.commands import JobCommand
from bulkjobs.ops.services import Actor, resume_job


class Command(JobCommand):
    help = (
        "Resume a paused job (email or wallet): the next processing run goes on with its "
        "items not yet done. A job waiting for its provider (mail server down) is not "
        "paused in this sense; it is retried by every run on its own."
    )

    def handle(self, *args, **options):
        kind, job = self.job_from(options)
        if not resume_job(job, by=Actor.command("resume_job")):
            raise CommandError(f"Job {job.pk} is {job.status}; only paused jobs can be resumed.")
        left = job.total_items - job.processed_items
        self.stdout.write(f"Resumed {kind.name} job {job.pk}: {left} item(s) left to do.")
