"""Google Wallet: genericObject sync over the REST API and the "Add to Google Wallet" link.

conf reads the settings (is_configured(), missing_settings()), checks reports them,
payload builds what is sent (ids, class and object bodies), client sends it (one
GoogleWalletClient per batch) and links makes the save link. Import them directly;
client pulls in requests and google-auth and links PyJWT, so their callers import them
where they are used, not at start-up. Importing this package registers the settings check.
"""

from django.core.checks import register

from .checks import check_google_wallet_settings

# Registering the same function again (wallet/apps.py importing wallet.google.checks) is a
# no-op: the registry is a set.
register(check_google_wallet_settings, "wallet")
