"""App config for the job engine."""

from django.apps import AppConfig


class BulkJobsConfig(AppConfig):
    name = "bulkjobs"
    verbose_name = "Background jobs"

    def ready(self):
        # django.contrib.admin is listed first, so its ready() has already imported
        # every admin.py: whatever job or item model is still unregistered now gets
        # the generic admin.
        from . import checks  # noqa: F401  (registers the settings checks)
        from .admin import register_missing

        register_missing()
