"""Create a bulk email job from the command line (the web form does the same through one service)."""

from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from bulkjobs.ops.commands import OperatorCommand
from bulkjobs.ops.options import add_card_selection_arguments, card_selection
from emails.recipients import RecipientListError, decode_upload
from emails.services import create_email_job


class Command(OperatorCommand):
    help = (
        "Queue a bulk email job. Without --recipients-file each chosen card is sent to its "
        "holder; with it, the one chosen card is sent to every address in the file (one per "
        "line: 'a@example.com', 'Name <a@example.com>' or CSV 'a@example.com,Name'). Nothing "
        "is created if any line is invalid."
    )

    def add_arguments(self, parser):
        add_card_selection_arguments(parser, "--all-cards")
        parser.add_argument("--recipients-file", type=Path, help="File of recipient addresses.")
        parser.add_argument("--subject", required=True)
        parser.add_argument("--message", default="", help="Personal message above the card.")

    def handle(self, *args, **options):
        company, cards = card_selection(options)
        if cards is None:
            cards = company.cards.all()
        recipients_text = None
        if options["recipients_file"]:
            try:
                data = options["recipients_file"].read_bytes()
            except OSError as exc:
                raise CommandError(f"Cannot read {options['recipients_file']}: {exc}") from None
        try:
            if options["recipients_file"]:
                recipients_text = decode_upload(data)
            job = create_email_job(
                company=company,
                cards=cards,
                subject=options["subject"],
                message=options["message"],
                recipients_text=recipients_text,
            )
        except RecipientListError as exc:
            raise CommandError(
                "Nothing was created; fix these lines:\n" + "\n".join(exc.messages)
            ) from None
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        self.stdout.write(f"Queued email job {job.pk} with {job.total_items} recipient(s).")
