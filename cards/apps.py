"""App config for cards; registers the demo-password deploy check."""

from django.apps import AppConfig


class CardsConfig(AppConfig):
    name = "cards"
    verbose_name = "Business cards"

    def ready(self):
        from . import checks  # noqa: F401  (registers the deploy check)
