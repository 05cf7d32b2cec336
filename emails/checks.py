"""System checks for sending through an ESP (django-anymail): the extra must be installed,
and without a webhook secret the ESP's bounces never reach the suppression list; and,
for `check --deploy`, SMTP without BOUNCE_ADDRESS (bounces after acceptance are lost)."""

import importlib.util

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from . import verp
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


@checks.register("emails", deploy=True)
def check_bounce_address(app_configs, **kwargs):
    if settings.EMAIL_BACKEND.startswith("anymail."):
        return []  # the ESP's webhooks report its bounces
    try:
        address = verp.bounce_address()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="emails.E002")]
    if address is not None:
        return []
    return [
        checks.Warning(
            "BOUNCE_ADDRESS is not set: a mail server that accepts an email and bounces it "
            "later sends the bounce to the From address, the item stays 'sent' and the dead "
            "address is emailed again by every job.",
            hint=(
                "Set BOUNCE_ADDRESS (bounces@bounce.example.com) and feed its mail to "
                "`manage.py process_bounces` (docs/bounces.md)."
            ),
            id="emails.W002",
        )
    ]
