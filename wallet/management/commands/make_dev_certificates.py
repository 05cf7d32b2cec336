"""Create a local, Apple-shaped certificate chain so the demo signs real passes offline."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from wallet.apple.devcerts import make_chain, write_chain


class Command(BaseCommand):
    help = (
        "Create a development root CA, a WWDR-like intermediate, a Pass Type ID certificate "
        "and key, and an ES256 APNs key under var/certs/ (or --out-dir), then print the "
        "environment lines that configure Apple Wallet with them. Devices will not accept "
        "these passes; openssl verifies them against dev-root.pem."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--out-dir",
            default=str(Path(settings.VAR_DIR) / "certs"),
            help="Directory for the files (default var/certs).",
        )
        parser.add_argument("--team-id", default="DEVTEAM123", help="Team id (certificate OU).")
        parser.add_argument(
            "--pass-type-id",
            default="pass.com.example.dev-card",
            help="Pass type identifier (certificate UID).",
        )
        parser.add_argument("--force", action="store_true", help="Overwrite existing files.")

    def handle(self, *args, **options):
        out_dir = Path(options["out_dir"]).resolve()
        if (out_dir / "pass-cert.pem").exists() and not options["force"]:
            raise CommandError(
                f"{out_dir} already holds certificates; use --force to replace them."
            )
        paths = write_chain(make_chain(options["team_id"], options["pass_type_id"]), out_dir)
        self.stdout.write(f"Development certificates written to {out_dir}. Add to .env:\n")
        self.stdout.write(
            "\n".join(
                [
                    f"APPLE_PASS_CERT={paths['pass_cert']}",
                    f"APPLE_PASS_KEY={paths['pass_key']}",
                    f"APPLE_WWDR_CERT={paths['wwdr']}",
                    f"APPLE_TEAM_ID={options['team_id']}",
                    f"APPLE_PASS_TYPE_ID={options['pass_type_id']}",
                    f"APNS_KEY_FILE={paths['apns_key']}",
                    "APNS_KEY_ID=DEVKEY1234",
                ]
            )
        )
