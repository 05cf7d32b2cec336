"""Pause a pending or processing bulk job until `resume_job` resumes it."""

from django.core.management.base import CommandError

from bulkjobs.ops.commands import JobCommand
from bulkjobs.ops.services import Actor, pause_job


class Command(JobCommand):
    help = (
        "Pause a pending or processing job (email or wallet): nothing more of it is sent or "
        "synced and no run claims it until `manage.py resume_job` resumes it; its company's "
        "next job goes ahead meanwhile. A batch in flight stops before its next item. The "
        'job shows "Paused by command pause_job".'
    )

    def handle(self, *args, **options):
        kind, job = self.job_from(options)
        if not pause_job(job, by=Actor.command("pause_job")):
            raise CommandError(
                f"Job {job.pk} is {job.status}; only pending or processing jobs can be paused."
            )
        self.stdout.write(
            f"Paused {kind.name} job {job.pk} after {job.processed_items} of "
            f"{job.total_items} item(s); resume it with: manage.py resume_job {kind.name} {job.pk}"
        )
