"""Lift sign-in lockouts of config/signin.py (per address, per username) at once."""

import ipaddress

from django.core.management.base import BaseCommand, CommandError

from cards.models import SignInThrottle


class Command(BaseCommand):
    help = (
        "Lift the sign-in lockout of usernames or client addresses (those counted whatever "
        "the username or from any address) and forget their failures; --list shows them. "
        "A username locked out from one address by django-axes is lifted with "
        "axes_reset_username."
    )

    def add_arguments(self, parser):
        parser.add_argument("names", nargs="*", help="usernames or IP addresses")
        parser.add_argument("--list", action="store_true", help="list the counted ones")

    def handle(self, *args, names, **options):
        if options["list"]:
            for row in SignInThrottle.objects.order_by("key"):
                until = (
                    f", locked until {row.locked_until:%Y-%m-%d %H:%M} UTC"
                    if (row.locked_until)
                    else ""
                )
                self.stdout.write(
                    f"{row.key}: {row.failures} failure(s), {row.lockouts} lockout(s){until}"
                )
            return
        if not names:
            raise CommandError("Name the usernames or addresses to unlock, or use --list.")
        keys = [self._key(name) for name in names]
        deleted, _ = SignInThrottle.objects.filter(key__in=keys).delete()
        self.stdout.write(f"Unlocked {deleted} of {len(keys)}: {', '.join(keys)}.")

    def _key(self, name):
        try:
            ip = ipaddress.ip_address(name)
        except ValueError:
            return f"username:{name.strip().lower()[:150]}"
        if ip.version == 6:
            return f"address:{ipaddress.ip_network(f'{ip}/64', strict=False)}"
        return f"address:{ip}"
