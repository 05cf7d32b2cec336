"""App config for wallet sync; registers the wallet job kind, the certificate checks and
the card signals that keep passes current (wallet/autosync.py)."""

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

        from django.db.models.signals import post_save, pre_delete, pre_save

        from cards.models import BusinessCard, Company

        from . import autosync

        post_save.connect(autosync.card_saved, sender=BusinessCard, dispatch_uid="wallet_autosync")
        pre_delete.connect(
            autosync.card_deleting, sender=BusinessCard, dispatch_uid="wallet_autovoid"
        )
        pre_save.connect(autosync.company_saving, sender=Company, dispatch_uid="wallet_company")
        post_save.connect(autosync.company_saved, sender=Company, dispatch_uid="wallet_company")
