"""App config for cards; registers the demo-password deploy check and the sign-in
throttle's signal receivers (config/signin.py, whose counts live in cards' table)."""

from django.apps import AppConfig


class CardsConfig(AppConfig):
    name = "cards"
    verbose_name = "Business cards"

    def ready(self):
        from config import signin  # noqa: F401  (connects the sign-in throttle)

        from . import checks  # noqa: F401  (registers the deploy check)
