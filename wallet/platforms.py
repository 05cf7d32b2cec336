"""Which wallet platforms are configured, in one place for the job kind, services and views.

The Google half lives in wallet.google (its own package); when that package is absent or
fails to import, Google Wallet is reported as not configured instead of breaking Apple.
"""

import functools
import logging

from .apple import conf as apple_conf

log = logging.getLogger("wallet")

_google_import_error = ""


@functools.cache
def _google_module():
    """wallet.google, imported on first use: it pulls in requests and google-auth, which
    an email-only cron run should not pay for. None when it cannot be imported."""
    global _google_import_error
    try:
        from wallet import google
    except ImportError as exc:  # the package is optional; say why in the status
        _google_import_error = str(exc)
        return None
    return google


def __getattr__(name):
    # `platforms.google_wallet` stays a plain attribute for callers, loaded lazily.
    if name == "google_wallet":
        return _google_module()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


APPLE = "apple"
GOOGLE = "google"
LABELS = {APPLE: "Apple Wallet", GOOGLE: "Google Wallet"}


def apple_missing():
    return apple_conf.missing_settings()


def google_missing():
    google_wallet = _google_module()
    if google_wallet is None:
        return [f"the wallet.google package ({_google_import_error or 'not installed'})"]
    if google_wallet.is_configured():
        return []
    return list(google_wallet.missing_settings()) or ["Google Wallet settings"]


def missing(platform):
    return apple_missing() if platform == APPLE else google_missing()


def is_configured(platform):
    return not missing(platform)


def not_configured_note(platform):
    return f"{LABELS[platform]} is not configured: set " + ", ".join(missing(platform)) + "."


def status():
    """{platform: {"label", "configured", "missing"}} for UIs and services."""
    result = {}
    for platform in (APPLE, GOOGLE):
        names = missing(platform)
        result[platform] = {
            "label": LABELS[platform],
            "configured": not names,
            "missing": names,
        }
    return result
