"""Read bounce and complaint messages sent back to BOUNCE_ADDRESS's VERP addresses and
mark their items (emails/bounces.py); from standard input, a Maildir or IMAP
(emails/bounce_sources.py)."""

import os
import sys

from django.core.management.base import CommandError
from django.db import DatabaseError

from bulkjobs.ops.commands import OperatorCommand
from emails import bounce_sources, verp
from emails.bounces import RESULTS

# sysexits.h EX_TEMPFAIL: an MTA's pipe delivery (Postfix, Exim) keeps the message and
# tries again later.
EX_TEMPFAIL = 75


class Command(OperatorCommand):
    help = (
        "Read bounces, delay notices and spam complaints sent to BOUNCE_ADDRESS's VERP "
        "addresses and mark their emails: one message on standard input (--stdin, for an "
        "MTA's pipe alias; exits 75 to make the MTA retry when the database is down), the "
        "new messages of a Maildir (--maildir DIR; each moved to cur/ once read) or the "
        "unseen messages of BOUNCE_IMAP_URL's mailbox (--imap; each flagged seen)."
    )

    def add_arguments(self, parser):
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--stdin", action="store_true", help="One message on stdin.")
        source.add_argument("--maildir", metavar="DIR", help="A Maildir's new messages.")
        source.add_argument("--imap", action="store_true", help="BOUNCE_IMAP_URL's mailbox.")
        parser.add_argument(
            "--recipient",
            default="",
            help="The envelope recipient (--stdin); by default the RECIPIENT or "
            "ORIGINAL_RECIPIENT variable Postfix's local delivery sets.",
        )

    def handle(self, *args, **options):
        if verp.bounce_address() is None:
            raise CommandError("Set BOUNCE_ADDRESS: no email is sent with a VERP address.")
        try:
            if options["stdin"]:
                recipient = (
                    options["recipient"]
                    or os.environ.get("ORIGINAL_RECIPIENT", "")
                    or os.environ.get("RECIPIENT", "")
                )
                results = bounce_sources.from_bytes(sys.stdin.buffer.read(), recipient)
            elif options["maildir"]:
                results = bounce_sources.from_maildir(options["maildir"])
            else:
                results = bounce_sources.from_imap()
        except DatabaseError as exc:
            self.stderr.write(f"Database unavailable, try again later: {exc}")
            sys.exit(EX_TEMPFAIL)
        counted = ", ".join(f"{results[name]} {name}" for name in RESULTS if results[name])
        self.stdout.write(f"Read {sum(results.values())} message(s): {counted or 'nothing'}")
