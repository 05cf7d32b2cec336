"""Google Wallet: genericObject sync over the REST API and the "Add to Google Wallet" link.

The wallet job kind uses is_configured()/missing_settings(), GoogleWalletClient (one per
batch) and save_link(); importing this package also registers the settings check.
"""

from django.core.checks import register

from .checks import check_google_wallet_settings
from .client import (
    SYNCED,
    UNCHANGED,
    GoogleWalletClient,
    build_object,
    class_id_for,
    content_hash,
    object_id_for,
)
from .conf import is_configured, missing_settings
from .save_link import save_link

# Registering the same function again (wallet/apps.py importing wallet.google.checks) is a
# no-op: the registry is a set.
register(check_google_wallet_settings, "wallet")

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
