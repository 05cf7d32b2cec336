"""System checks for the Google Wallet settings (run by `manage.py check` and every command)."""

import re

from django.conf import settings
from django.core.checks import Error, Warning

from wallet.errors import NotConfigured

from . import conf

HEX_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")


def check_google_wallet_settings(app_configs=None, **kwargs):
    messages = []
    has_key = bool(conf.key_file() or conf.key_json())
    if has_key:
        try:
            conf.read_service_account()
        except NotConfigured as exc:
            messages.append(
                Error(
                    str(exc),
                    hint="Point it at the JSON key downloaded for the Wallet service account.",
                    id="wallet.google.E001",
                )
            )
        if not conf.issuer_id():
            messages.append(
                Error(
                    "A Google Wallet service-account key is set but GOOGLE_WALLET_ISSUER_ID "
                    "is not.",
                    hint="Copy the issuer id from the Google Pay & Wallet Console.",
                    id="wallet.google.E002",
                )
            )
    elif conf.issuer_id():
        messages.append(
            Warning(
                "GOOGLE_WALLET_ISSUER_ID is set but no service-account key; Google Wallet "
                "sync stays off.",
                hint=f"Set {conf.KEY_SETTING_NAMES}.",
                id="wallet.google.W001",
            )
        )
    if conf.issuer_id() and not conf.issuer_id().isdigit():
        messages.append(
            Warning(
                f"GOOGLE_WALLET_ISSUER_ID {conf.issuer_id()!r} is not numeric; Google issuer "
                "ids are.",
                id="wallet.google.W002",
            )
        )
    colour = str(getattr(settings, "WALLET_BRAND_COLOR", "")).strip()
    if not HEX_COLOR.match(colour):
        messages.append(
            Error(
                f"WALLET_BRAND_COLOR {colour!r} is not #RRGGBB (both platforms' pass colour "
                "for companies without their own).",
                id="wallet.google.E003",
            )
        )
    return messages
