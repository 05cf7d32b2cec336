"""Create a bulk email job from the command line (the web form does the same through one service)."""

from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from cards.models import Company
from emails.recipients import RecipientListError, decode_upload
from emails.services import create_email_job


class Command(BaseCommand):
    help = (
        "Queue a bulk email job. Without --recipients-file each chosen card is sent to its "
        "holder; with it, the one chosen card is sent to every address in the file (one per "
        "line: 'a@example.com', 'Name <a@example.com>' or CSV 'a@example.com,Name'). Nothing "
        "is created if any line is invalid."
    )

    def add_arguments(self, parser):
        parser.add_argument("--company", required=True, help="Company slug.")
        cards = parser.add_mutually_exclusive_group(required=True)
        cards.add_argument(
            "--card",
            type=int,
            action="append",
            dest="card_ids",
            metavar="ID",
            help="Card id (repeat for several).",
        )
        cards.add_argument("--all-cards", action="store_true", help="Every card of the company.")
        parser.add_argument("--recipients-file", type=Path, help="File of recipient addresses.")
        parser.add_argument("--subject", required=True)
        parser.add_argument("--message", default="", help="Personal message above the card.")

    def handle(self, *args, **options):
        company = Company.objects.filter(slug=options["company"]).first()
        if company is None:
            raise CommandError(f"No company with slug {options['company']!r}.")
        cards = company.cards.all()
        if options["card_ids"]:
            cards = list(cards.filter(pk__in=options["card_ids"]))
            missing = set(options["card_ids"]) - {c.pk for c in cards}
            if missing:
                raise CommandError(f"No card(s) {sorted(missing)} in company {company.slug}.")
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
