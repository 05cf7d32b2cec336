"""Queue a wallet sync job for some or all cards of a company."""

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from bulkjobs.ops.commands import OperatorCommand
from bulkjobs.ops.options import add_card_selection_arguments, card_selection
from wallet.services import create_wallet_job


class Command(OperatorCommand):
    help = (
        "Queue a wallet sync job for a company: --all cards, or the cards given with --card "
        "(repeatable). Refuses when neither Apple nor Google Wallet is configured. "
        "process_wallet_jobs does the work."
    )

    def add_arguments(self, parser):
        add_card_selection_arguments(parser, "--all")

    def handle(self, *args, **options):
        company, cards = card_selection(options)
        try:
            job = create_wallet_job(company, cards=cards)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        self.stdout.write(f"Wallet job {job.pk} queued: {job.total_items} card(s).")
