"""System checks for sending through an ESP (django-anymail): the extra must be installed,
and without a webhook secret the ESP's bounces never reach the suppression list."""

import importlib.util

from django.conf import settings
from django.core import checks

from .webhooks import webhook_secret_configured


@checks.register("emails")
def check_esp_backend(app_configs, **kwargs):
    if not settings.EMAIL_BACKEND.startswith("anymail."):
        return []
    if importlib.util.find_spec("anymail") is None:
        return [
            checks.Error(
                f"EMAIL_BACKEND is {settings.EMAIL_BACKEND}, but django-anymail is not installed.",
                hint="pip install -r requirements-esp.txt",
                id="emails.E001",
            )
        ]
    if not webhook_secret_configured():
        return [
            checks.Warning(
                "ANYMAIL_WEBHOOK_SECRET is not set: the ESP's bounce and complaint webhooks "
                "are refused, so its bounces never reach the suppression list.",
                hint=(
                    "Set ANYMAIL_WEBHOOK_SECRET=user:password and give the ESP "
                    "https://user:password@<your site>/emails/anymail/<esp>/tracking/ "
                    "(docs/operations.md, ESP backends)."
                ),
                id="emails.W001",
            )
        ]
    return []
