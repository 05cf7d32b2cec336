"""App config for bulk email; registers the email job kind with the engine, the ESP
system checks and, when django-anymail is installed, the receiver of its ESP tracking
webhooks."""

from django.apps import AppConfig


class EmailsConfig(AppConfig):
    name = "emails"
    verbose_name = "Bulk email"

    def ready(self):
        from bulkjobs.kinds import register

        from .kind import EmailJobKind

        register(EmailJobKind())

        from . import checks  # noqa: F401  (registers the ESP checks)

        try:
            from anymail.signals import tracking
        except ImportError:  # the optional ESP extra is not installed
            return
        from .webhooks import record_tracking_event

        tracking.connect(record_tracking_event, dispatch_uid="emails.record_tracking_event")
