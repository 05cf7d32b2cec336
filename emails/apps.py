"""App config for bulk email; registers the email job kind with the engine."""

from django.apps import AppConfig


class EmailsConfig(AppConfig):
    name = "emails"
    verbose_name = "Bulk email"

    def ready(self):
        from bulkjobs.kinds import register

        from .kind import EmailJobKind

        register(EmailJobKind())
