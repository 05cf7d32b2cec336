"""Which wallet platforms are configured, in one place for the job kind, services and views.

The Google half lives in wallet.google (its own package); when that package is absent or
fails to import, Google Wallet is reported as not configured instead of breaking Apple.
"""

import logging

from .apple import conf as apple_conf

log = logging.getLogger("wallet")


APPLE = "apple"
GOOGLE = "google"
LABELS = {APPLE: "Apple Wallet", GOOGLE: "Google Wallet"}


def apple_missing():
    return apple_conf.missing_settings()


def google_missing():
    try:
        from .google import conf as google_conf
    except ImportError as exc:  # the package is optional; say why in the status
        return [f"the wallet.google package ({str(exc) or 'not installed'})"]
    if google_conf.is_configured():
        return []
    return list(google_conf.missing_settings()) or ["Google Wallet settings"]


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
