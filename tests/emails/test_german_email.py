"""The card email in its company's language: boilerplate, footer and unsubscribe page.

Delivered through a real SMTP server (aiosmtpd on loopback); the language is the
company's, never the process's or the previous message's.
"""

import pytest
from django.test import Client
from django.utils import translation

from bulkjobs.engine import run_once
from cards.models import Company
from tests.conftest import make_cards, make_email_job

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_language_left_behind():
    yield
    translation.deactivate()


@pytest.fixture
def german_company():
    return Company.objects.create(
        name="Beispiel GmbH", slug="beispiel", language="de", time_zone="Europe/Berlin"
    )


def bodies(received):
    message = received.message
    return (
        message.get_body(preferencelist=("plain",)).get_content(),
        message.get_body(preferencelist=("html",)).get_content(),
    )


def unsubscribe_path(received):
    link = "".join(str(received.message["List-Unsubscribe"]).split()).strip("<>")
    return link.removeprefix("http://localhost:8000")


def test_a_german_companys_email_has_german_boilerplate(german_company, email_kind, smtp_sink):
    card = make_cards(german_company, 1, prefix="Erika")[0]
    make_email_job(
        german_company, ["kunde@example.org"], card=card, subject="Meine Karte", message="Hallo!"
    )
    run_once(email_kind)
    [received] = smtp_sink.messages
    text, html = bodies(received)

    assert received.message["Subject"] == "Meine Karte"
    assert "Hallo!" in text and "Erika 1" in text
    # The German company's number in its national format (cards/phones.py).
    assert "Telefon: 030 1234567" in text and "E-Mail: erika1@example.com" in text
    assert f"Karte ansehen: {card.public_url}" in text
    assert "Der Kontakt ist als vCard angehängt (Erika 1.vcf)." in text
    assert (
        "Sie erhalten diese E-Mail, weil Beispiel GmbH eine Visitenkarte mit Ihnen geteilt hat."
        in text
    )
    assert "Abbestellen: http://localhost:8000/emails/unsubscribe/" in text
    assert '<html lang="de">' in html and ">Karte ansehen</a>" in html
    assert ">Abbestellen</a>" in html
    for english in ("View the card", "You received this", "Unsubscribe", "Phone:"):
        assert english not in text and english not in html

    # The List-Unsubscribe link opens a German page, whatever the browser says.
    page = Client().get(unsubscribe_path(received), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Keine Visitenkarten-E-Mails von Beispiel GmbH mehr an" in page
    assert "<strong>kunde@example.org</strong>" in page


def test_each_company_gets_its_own_language_in_one_run(
    company, german_company, email_kind, smtp_sink
):
    make_email_job(german_company, ["de@example.org"])
    make_email_job(company, ["en@example.org"])
    # A cron run's own language is irrelevant: each message is its company's.
    with translation.override("de"):
        summary = run_once(email_kind)
    assert summary.companies_served == 2
    by_recipient = {m.rcpt_tos[0]: bodies(m)[0] for m in smtp_sink.messages}
    assert "Abbestellen:" in by_recipient["de@example.org"]
    assert "Unsubscribe:" in by_recipient["en@example.org"]
    assert (
        "You received this because Acme shared a business card with you."
        in (by_recipient["en@example.org"])
    )
    assert "Abbestellen" not in by_recipient["en@example.org"]


def test_the_preview_is_in_the_companys_language(german_company):
    from emails.message import CardEmail
    from emails.models import BulkEmailJob, BulkEmailJobItem

    card = make_cards(german_company, 1)[0]
    job = BulkEmailJob(company=german_company, subject="Hallo")
    item = BulkEmailJobItem(job=job, card=card, recipient_email="a@example.org")
    # Built in an English context (a request from an English browser, a shell).
    with translation.override("en"):
        message = CardEmail(job, card).for_recipient(item)
        # ...and that context is English again afterwards.
        assert translation.get_language() == "en"
    assert "Abbestellen:" in message.body
