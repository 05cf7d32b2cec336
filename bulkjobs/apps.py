"""App config for the job engine."""

from django.apps import AppConfig


class BulkJobsConfig(AppConfig):
    name = "bulkjobs"
    verbose_name = "Background jobs"
