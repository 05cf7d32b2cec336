"""Google Wallet settings, read lazily from django.conf.settings.

Nothing here runs at import time, so tests can point the settings at a loopback server
with pytest-django's ``settings`` fixture and every call sees the change.
"""

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from django.conf import settings

from wallet.errors import NotConfigured

SCOPE = "https://www.googleapis.com/auth/wallet_object.issuer"
DEFAULT_BASE_URL = "https://walletobjects.googleapis.com/walletobjects/v1"
KEY_FIELDS = ("client_email", "private_key", "token_uri")
DEFAULT_LOGO_STATIC = "wallet/google-logo.png"
KEY_SETTING_NAMES = "GOOGLE_WALLET_SERVICE_ACCOUNT_FILE or GOOGLE_WALLET_SERVICE_ACCOUNT_JSON"


def _setting(name, default=""):
    value = getattr(settings, name, default)
    return default if value is None else value


def issuer_id():
    return str(_setting("GOOGLE_WALLET_ISSUER_ID")).strip()


def key_file():
    return str(_setting("GOOGLE_WALLET_SERVICE_ACCOUNT_FILE")).strip()


def key_json():
    return str(_setting("GOOGLE_WALLET_SERVICE_ACCOUNT_JSON")).strip()


def base_url():
    return (str(_setting("GOOGLE_WALLET_BASE_URL")).strip() or DEFAULT_BASE_URL).rstrip("/")


def token_uri_override():
    return str(_setting("GOOGLE_WALLET_TOKEN_URI")).strip()


def timeout():
    return float(_setting("GOOGLE_WALLET_TIMEOUT", 15.0) or 15.0)


def origins():
    value = _setting("GOOGLE_WALLET_ORIGINS", None)
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    # The save button only renders on listed origins; the site itself is the sane default.
    return list(value) if value else [settings.SITE_URL]


def logo_url():
    """An absolute URL, or "" for no logo (Google then shows the card title's initial)."""
    configured = str(_setting("GOOGLE_WALLET_LOGO_URL")).strip()
    if configured:
        return configured
    # Fall back to a shipped static asset, but only if it exists: Google fetches the
    # image itself, and a dead URL would show a broken logo on every pass.
    from django.contrib.staticfiles import finders
    from django.templatetags.static import static

    if finders.find(DEFAULT_LOGO_STATIC):
        return settings.SITE_URL + static(DEFAULT_LOGO_STATIC)
    return ""


def missing_settings():
    """Names of the settings that must be set before anything can be synced."""
    missing = []
    if not issuer_id():
        missing.append("GOOGLE_WALLET_ISSUER_ID")
    if not key_file() and not key_json():
        missing.append(KEY_SETTING_NAMES)
    return missing


def is_configured():
    return not missing_settings()


@dataclass(frozen=True)
class ServiceAccount:
    info: dict

    @property
    def email(self):
        return self.info["client_email"]

    @property
    def private_key(self):
        return self.info["private_key"]

    @property
    def key_id(self):
        return self.info.get("private_key_id") or None


def load_service_account():
    """The service-account key as a dict, with GOOGLE_WALLET_TOKEN_URI applied.

    Raises NotConfigured (naming the setting) when it is missing, unreadable or not a
    service-account key, so a batch stops on configuration instead of failing each card.
    """
    missing = missing_settings()
    if missing:
        raise NotConfigured("Google Wallet is not configured; set " + ", ".join(missing) + ".")
    return read_service_account()


def read_service_account():
    """The configured key, whatever the other settings say (the system check uses this)."""
    if key_json():
        source = "GOOGLE_WALLET_SERVICE_ACCOUNT_JSON"
        text = key_json()
    else:
        source = "GOOGLE_WALLET_SERVICE_ACCOUNT_FILE"
        try:
            text = Path(key_file()).read_text(encoding="utf-8")
        except OSError as exc:
            raise NotConfigured(f"{source}: cannot read {key_file()!r} ({exc.strerror}).") from exc
    try:
        info = json.loads(text)
    except ValueError as exc:
        raise NotConfigured(f"{source} is not valid JSON ({exc.msg}).") from exc
    if not isinstance(info, dict) or any(not info.get(field) for field in KEY_FIELDS):
        raise NotConfigured(
            f"{source} is not a service-account key (needs {', '.join(KEY_FIELDS)})."
        )
    if token_uri_override():
        info = {**info, "token_uri": token_uri_override()}
    try:
        # Parse the key now: a damaged PEM should stop the batch as configuration, not
        # surface later as a per-card failure.
        private_key_object(info["private_key"])
    except (ValueError, TypeError) as exc:
        raise NotConfigured(f"{source}: the private_key cannot be loaded ({exc}).") from exc
    return ServiceAccount(info)


@functools.lru_cache(maxsize=4)
def private_key_object(pem):
    """The loaded RSA key, cached: loading (and checking) a 2048-bit key takes ~50 ms,
    which would otherwise be paid by every batch and every save link."""
    return serialization.load_pem_private_key(pem.encode(), password=None)
