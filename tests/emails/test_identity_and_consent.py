"""German legal details and the person's opt-out (#21): the company's imprint and the
operator's in both parts of the email, in the company's language; the send page's consent
for a pasted or uploaded list, stored on the job; "no card emails from this platform at
all" on the unsubscribe page, honoured at send time for every company."""

from datetime import UTC, datetime
from email import message_from_bytes, policy

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from bulkjobs.engine import run_once
from cards.models import Membership
from emails.models import BulkEmailJob, EmailSuppression
from emails.unsubscribe import unsubscribe_url
from tests.conftest import make_cards, make_email_job, make_user

pytestmark = pytest.mark.django_db

SEND = reverse("emails:send")
IMPRINT = "Acme Karten GmbH\nHauptstraße 1, 10115 Berlin\nHRB 12345 B, Amtsgericht Charlottenburg"
PLATFORM_IMPRINT = "Cards Platform UG (haftungsbeschränkt)\nGeschäftsführerin: Eva Beispiel"


def parts(received):
    message = message_from_bytes(received.data, policy=policy.default)
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    return text, html


@pytest.mark.parametrize(
    ("language", "company_heading", "platform_heading"),
    [
        ("en", "Legal details of Acme:", "Sent by the card platform:"),
        ("de", "Angaben zu Acme:", "Versendet über die Kartenplattform:"),
    ],
)
def test_both_imprints_close_both_parts_in_the_companys_language(
    company, email_kind, smtp_sink, settings, language, company_heading, platform_heading
):
    settings.PLATFORM_IMPRINT = PLATFORM_IMPRINT
    company.language, company.imprint = language, IMPRINT
    company.save()
    make_email_job(company, ["jane@example.org"])

    run_once(email_kind)

    text, html = parts(smtp_sink.messages[0])
    assert f"{company_heading}\n{IMPRINT}\n" in text.replace("\r\n", "\n")
    assert f"{platform_heading}\n{PLATFORM_IMPRINT}\n" in text.replace("\r\n", "\n")
    assert f"{company_heading}<br>Acme Karten GmbH<br>Hauptstraße 1, 10115 Berlin<br>" in html
    assert f"{platform_heading}<br>Cards Platform UG (haftungsbeschränkt)<br>" in html
    # After the unsubscribe line: the legal details close the message.
    assert text.index("Unsubscribe:" if language == "en" else "Abbestellen:") < text.index(
        company_heading
    )


def test_without_imprints_no_empty_headings(company, email_kind, smtp_sink):
    make_email_job(company, ["jane@example.org"])
    run_once(email_kind)
    text, html = parts(smtp_sink.messages[0])
    assert "Legal details" not in text + html and "card platform" not in text + html


def test_the_imprint_is_edited_in_the_admin(company):
    operator = get_user_model().objects.create_superuser("op", "op@example.com", "pw")
    client = Client()
    client.force_login(operator)
    url = reverse("admin:cards_company_change", args=[company.pk])
    page = client.get(url).content.decode()
    assert 'name="imprint"' in page
    data = {
        "name": company.name,
        "slug": company.slug,
        "language": "de",
        "time_zone": "Europe/Berlin",
        "reply_to": "holder",
        "reply_to_address": "",
        "imprint": IMPRINT,
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
    }
    response = client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:3000]
    company.refresh_from_db()
    assert company.imprint == IMPRINT


# Consent on the send page


@pytest.fixture
def owner_client(company):
    owner = make_user("owner", company, Membership.Role.ADMIN)
    client = Client()
    client.force_login(owner)
    client.owner = owner
    return client


def list_data(card, **overrides):
    data = {
        "card_mode": "selected",
        "cards": [card.pk],
        "recipient_mode": "list",
        "recipients_text": "ann@example.com\nbob@example.org",
        "subject": "Our card",
        "message": "",
        "action": "start",
    }
    data.update(overrides)
    return data


def test_a_pasted_list_needs_the_senders_confirmation(owner_client, company):
    [card] = make_cards(company, 1)
    response = owner_client.post(SEND, list_data(card))
    assert response.status_code == 400
    assert "Confirm that the recipients agreed to receive the card." in response.content.decode()
    assert not BulkEmailJob.objects.exists()


def test_the_confirmation_is_stored_with_who_and_when(owner_client, company):
    [card] = make_cards(company, 1)
    with time_machine.travel("2026-12-01 10:30:00 +0000", tick=False):
        response = owner_client.post(SEND, list_data(card, consent="on"))
    assert response.status_code == 302
    job = BulkEmailJob.objects.get()
    assert job.consent_confirmed_by == owner_client.owner
    assert job.consent_confirmed_at == datetime(2026, 12, 1, 10, 30, tzinfo=UTC)


def test_cards_sent_to_their_holders_need_no_confirmation(owner_client, company):
    make_cards(company, 2)
    response = owner_client.post(
        SEND,
        {"card_mode": "all", "recipient_mode": "holders", "subject": "Hi", "action": "start"},
    )
    assert response.status_code == 302
    job = BulkEmailJob.objects.get()
    assert (job.consent_confirmed_by, job.consent_confirmed_at) == (None, None)


def test_the_german_send_page_asks_in_german(company):
    company.language = "de"
    company.save()
    owner = make_user("owner", company, Membership.Role.ADMIN)
    client = Client()
    client.force_login(owner)
    page = client.get(SEND).content.decode()
    assert (
        "Die Empfänger dieser Liste haben zugestimmt, meine Karte per E-Mail zu erhalten." in page
    )


# One opt-out for the person


def test_the_unsubscribe_page_offers_the_whole_platform(company):
    page = Client().get(unsubscribe_url(company.pk, "jane@example.org")).content.decode()
    assert "No more card emails from Acme" in page
    assert "No card emails from Business Cards at all, from any company" in page


def test_a_platform_wide_opt_out_stops_every_companys_emails(
    company, other_company, email_kind, smtp_sink
):
    response = Client().post(unsubscribe_url(company.pk, "Jane@Example.org"), {"scope": "platform"})
    assert "from any company" in response.content.decode()
    entry = EmailSuppression.objects.get()
    assert (entry.company, entry.email, entry.platform_wide) == (
        company,
        "jane@example.org",
        True,
    )
    other = make_email_job(other_company, ["jane@example.org", "joe@example.org"])

    run_once(email_kind)

    assert [m.rcpt_tos for m in smtp_sink.messages] == [["joe@example.org"]]
    assert other.items.get(recipient_email="jane@example.org").reason_code == "suppressed"


@pytest.mark.parametrize("form", [{"scope": "company"}, {"List-Unsubscribe": "One-Click"}])
def test_the_companys_opt_out_and_one_click_leave_other_companies_alone(
    company, other_company, email_kind, smtp_sink, form
):
    Client().post(unsubscribe_url(company.pk, "jane@example.org"), form)
    assert EmailSuppression.objects.get().platform_wide is False
    make_email_job(other_company, ["jane@example.org"])
    mine = make_email_job(company, ["jane@example.org"])

    run_once(email_kind)

    assert [m.rcpt_tos for m in smtp_sink.messages] == [["jane@example.org"]]
    assert mine.items.get().reason_code == "suppressed"


def test_widening_an_earlier_opt_out_to_the_platform(company, other_company):
    url = unsubscribe_url(company.pk, "jane@example.org")
    Client().post(url, {"List-Unsubscribe": "One-Click"})
    Client().post(url, {"scope": "platform"})
    entry = EmailSuppression.objects.get()
    assert entry.platform_wide is True
    assert entry.detail == "confirmation page, every company"


def test_retrying_a_job_leaves_an_address_opted_out_of_the_platform_failed(company, other_company):
    from bulkjobs.ops.services import retry_failed_items

    job = make_email_job(other_company, ["jane@example.org", "joe@example.org"])
    job.items.update(status="failed", reason="451 try later")
    BulkEmailJob.objects.filter(pk=job.pk).update(status="completed", failed_items=2)
    job.refresh_from_db()
    # Jane left the whole platform from another company's email.
    Client().post(unsubscribe_url(company.pk, "jane@example.org"), {"scope": "platform"})

    result = retry_failed_items(job)

    assert result.queued == 1
    assert result.skipped["unsubscribed"] == 1
    assert job.items.get(recipient_email="jane@example.org").status == "failed"
