"""App config for wallet sync; registers the wallet job kind and the certificate checks."""

from django.apps import AppConfig


class WalletConfig(AppConfig):
    name = "wallet"
    verbose_name = "Wallet sync"

    def ready(self):
        from bulkjobs.kinds import register

        from . import checks  # noqa: F401  (registers the system checks)
        from .google import checks as google_checks  # noqa: F401  (registers its check)
        from .kind import WalletJobKind

        register(WalletJobKind())
