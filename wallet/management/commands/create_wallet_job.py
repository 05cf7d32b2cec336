"""Queue a wallet sync job for some or all cards of a company."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from cards.models import BusinessCard, Company
from wallet.services import create_wallet_job


class Command(BaseCommand):
    help = (
        "Queue a wallet sync job for a company: --all cards, or the cards given with --card "
        "(repeatable). Refuses when neither Apple nor Google Wallet is configured. "
        "process_wallet_jobs does the work."
    )

    def add_arguments(self, parser):
        parser.add_argument("--company", required=True, metavar="SLUG", help="Company slug.")
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument(
            "--card",
            type=int,
            action="append",
            metavar="ID",
            help="Card id to sync (repeat for several).",
        )
        which.add_argument("--all", action="store_true", help="Sync every card of the company.")

    def handle(self, *args, **options):
        company = Company.objects.filter(slug=options["company"]).first()
        if company is None:
            raise CommandError(f"No company with slug {options['company']!r}.")
        cards = None
        if options["card"]:
            cards = list(BusinessCard.objects.filter(company=company, pk__in=options["card"]))
            found = {card.pk for card in cards}
            unknown = sorted(set(options["card"]) - found)
            if unknown:
                raise CommandError(
                    f"No card(s) {', '.join(map(str, unknown))} in company {company.slug!r}."
                )
        try:
            job = create_wallet_job(company, cards=cards)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        self.stdout.write(f"Wallet job {job.pk} queued: {job.total_items} card(s).")
