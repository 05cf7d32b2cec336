"""Google Wallet: genericObject sync over the REST API and the "Add to Google Wallet" link.

The wallet job kind uses is_configured()/missing_settings(), GoogleWalletClient (one per
batch) and save_link(); importing this package also registers the settings check.
"""

import importlib

from django.core.checks import register

from .checks import check_google_wallet_settings
from .conf import is_configured, missing_settings

# Registering the same function again (wallet/apps.py importing wallet.google.checks) is a
# no-op: the registry is a set.
register(check_google_wallet_settings, "wallet")

# The client pulls in requests and google-auth; it is imported on first use so that
# loading this package (for its check, at start-up) stays cheap for every cron run.
_LAZY = {
    "SYNCED": "client",
    "UNCHANGED": "client",
    "GoogleWalletClient": "client",
    "build_object": "payload",
    "class_id_for": "payload",
    "content_hash": "payload",
    "object_id_for": "payload",
    "save_link": "links",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "SYNCED",
    "UNCHANGED",
    "GoogleWalletClient",
    "build_object",
    "class_id_for",
    "content_hash",
    "is_configured",
    "missing_settings",
    "object_id_for",
    "save_link",
]
