"""The options the job commands share: which company (`--company`, by slug or id) and which
of its cards (`--card ID`, repeatable, or all of them).

Used by `create_email_job`, `create_wallet_job` and the processing commands
(ops/commands.py), so a company is looked up, and a wrong one reported, the same way
everywhere. Lives with the command bases rather than in cards/, which knows nothing of
commands: it reads Company and BusinessCard as any user of cards does.
"""

from django.core.management.base import CommandError

from cards.models import Company


def company_from_option(value):
    """The company whose slug, or else whose id, is `value`; CommandError if none."""
    company = Company.objects.filter(slug=value).first()
    if company is None and value.isdigit():
        company = Company.objects.filter(pk=int(value)).first()
    if company is None:
        raise CommandError(f"No company with slug or id {value!r}.")
    return company


def add_card_selection_arguments(parser, all_option="--all-cards"):
    """`--company` (required) and either `--card ID` (repeatable) or `all_option` (the name
    each command has always had: --all-cards, --all); read them with card_selection()."""
    parser.add_argument(
        "--company", required=True, metavar="SLUG_OR_ID", help="Company slug or id."
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--card",
        type=int,
        action="append",
        dest="card_ids",
        metavar="ID",
        help="Card id (repeat for several).",
    )
    which.add_argument(
        all_option, action="store_true", dest="all_cards", help="Every card of the company."
    )


def card_selection(options):
    """(company, cards) from the parsed options; cards is None for all the company's cards.
    CommandError for an unknown company, or a card id that is not the company's."""
    company = company_from_option(options["company"])
    if not options["card_ids"]:
        return company, None
    cards = list(company.cards.filter(pk__in=options["card_ids"]))
    missing = sorted(set(options["card_ids"]) - {card.pk for card in cards})
    if missing:
        raise CommandError(
            f"No card(s) {', '.join(map(str, missing))} in company {company.slug!r}."
        )
    return company, cards
