"""Creating email jobs: recipient parsing, validation with line numbers, duplicates, atomicity."""

from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError

from emails.models import BulkEmailJob, BulkEmailJobItem
from emails.recipients import RecipientListError, parse_recipients
from emails.services import create_email_job
from tests.conftest import make_cards

pytestmark = pytest.mark.django_db


def test_parse_accepts_the_documented_forms_and_drops_duplicates():
    text = (
        "email,name\n"
        "jane@example.com\n"
        "\n"
        "# a comment\n"
        "John Roe <john@example.org>\n"
        "ann@example.net,Ann Bee\n"
        "Carl Dee,carl@example.net\n"
        "JANE@example.com\n"
    )
    recipients, duplicates = parse_recipients(text)
    assert [(r.email, r.name) for r in recipients] == [
        ("jane@example.com", ""),
        ("john@example.org", "John Roe"),
        ("ann@example.net", "Ann Bee"),
        ("carl@example.net", "Carl Dee"),
    ]
    assert duplicates == 1


def test_every_bad_line_is_reported_with_its_number():
    text = "ok@example.com\na@localhost\n\nnot-an-address\nbob@example\nfine@example.org\n"
    with pytest.raises(RecipientListError) as caught:
        parse_recipients(text)
    assert [(b.line_number, b.text) for b in caught.value.bad_lines] == [
        (2, "a@localhost"),
        (4, "not-an-address"),
        (5, "bob@example"),
    ]
    assert caught.value.messages[0].startswith("Line 2: Enter a valid email address")


def test_a_bad_line_creates_nothing(company):
    card = make_cards(company, 1)[0]
    with pytest.raises(RecipientListError):
        create_email_job(
            company=company,
            cards=[card],
            subject="Hi",
            recipients_text="a@example.com\nbad@localhost",
        )
    assert not BulkEmailJob.objects.exists() and not BulkEmailJobItem.objects.exists()


def test_holder_mode_sends_each_card_to_its_holder(company, owner):
    cards = make_cards(company, 3)
    job = create_email_job(company=company, cards=cards, subject="Cards", created_by=owner)
    assert job.total_items == 3 and job.created_by == owner
    assert sorted(job.items.values_list("recipient_email", flat=True)) == sorted(
        c.email for c in cards
    )


def test_holder_mode_rejects_cards_without_an_address(company):
    cards = make_cards(company, 2)
    cards[1].email = ""
    cards[1].save()
    with pytest.raises(RecipientListError, match="no valid email"):
        create_email_job(company=company, cards=cards, subject="Cards")
    assert not BulkEmailJob.objects.exists()


def test_cards_of_another_company_are_refused(company, other_company):
    theirs = make_cards(other_company, 1, prefix="Them")
    with pytest.raises(ValidationError, match="do not belong"):
        create_email_job(company=company, cards=theirs, subject="x")


def test_a_list_needs_exactly_one_card(company):
    with pytest.raises(ValidationError, match="exactly one card"):
        create_email_job(
            company=company,
            cards=make_cards(company, 2),
            subject="x",
            recipients_text="a@example.com",
        )


def test_create_email_job_command_chooses_the_company_and_its_cards(company, other_company):
    cards = make_cards(company, 3)
    theirs = make_cards(other_company, 1, prefix="Other")[0]
    out = StringIO()
    call_command("create_email_job", "--company", "acme", "--all-cards", "--subject", "Hi",
                 stdout=out)  # fmt: skip
    assert "3 recipient(s)" in out.getvalue()
    call_command("create_email_job", "--company", str(company.pk), "--card", str(cards[1].pk),
                 "--subject", "Hi", stdout=out)  # fmt: skip
    assert [i.card_id for i in BulkEmailJob.objects.order_by("-id")[0].items.all()] == [cards[1].pk]
    with pytest.raises(CommandError, match=rf"No card\(s\) {theirs.pk}, 99999 in company 'acme'"):
        call_command("create_email_job", "--company", "acme", "--card", str(theirs.pk),
                     "--card", "99999", "--subject", "Hi")  # fmt: skip
    with pytest.raises(CommandError, match="No company with slug or id 'nope'"):
        call_command("create_email_job", "--company", "nope", "--all-cards", "--subject", "Hi")
    assert BulkEmailJob.objects.count() == 2
