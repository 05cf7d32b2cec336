"""A batch's lanes share its cards' emails (emails.kind.CardEmails): each card's email
is built once per batch, not once per lane, and the next batch builds it afresh from
the card as it is then."""

import pytest
from django.test.signals import template_rendered

from bulkjobs.engine import run_once
from tests.conftest import make_email_job

pytestmark = pytest.mark.django_db(transaction=True)

CARD_EMAIL = "emails/card_email.html"


@pytest.fixture
def renders():
    """The names of the templates rendered while the test runs."""
    names = []

    def note(sender, template, **kwargs):
        names.append(template.name)

    template_rendered.connect(note)
    yield names
    template_rendered.disconnect(note)


@pytest.fixture
def two_lanes(settings):
    settings.BULKJOBS = {**settings.BULKJOBS, "EMAIL_CONNECTIONS": "2", "EMAIL_COMPANY_RATE": "0"}


def test_the_lanes_of_a_batch_build_its_cards_email_once(
    company, smtp_sink, email_kind, two_lanes, renders
):
    job = make_email_job(company, 20)
    run_once(email_kind, batch_size=20)
    assert len(smtp_sink.messages) == 20
    # Two lanes, two connections, one card email between them.
    assert len({message.peer for message in smtp_sink.messages}) == 2
    assert renders.count(CARD_EMAIL) == 1
    job.refresh_from_db()
    assert job.succeeded_items == 20


def test_the_next_batch_sends_the_card_as_edited_meanwhile(
    company, smtp_sink, email_kind, two_lanes, renders
):
    job = make_email_job(company, 40)
    run_once(email_kind, batch_size=20, max_seconds=1e-6)  # one batch
    card = job.items.first().card
    card.full_name = "Renamed Holder"
    card.save()
    run_once(email_kind, batch_size=20)
    assert len(smtp_sink.messages) == 40
    assert renders.count(CARD_EMAIL) == 2
    names = [m.message.get_body(("plain",)).get_content() for m in smtp_sink.messages]
    assert sum("Renamed Holder" in text for text in names) == 20
