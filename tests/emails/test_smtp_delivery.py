"""Real SMTP delivery to aiosmtpd on loopback: content, connection reuse, and every failure class."""

import pytest
from django.core import signing
from django.test import Client

from bulkjobs.engine import run_once
from bulkjobs.models import Status
from emails.models import EmailSuppression
from tests.conftest import make_email_job
from tests.smtp_sink import SmtpSink, free_port

pytestmark = pytest.mark.django_db


@pytest.fixture(params=[True, False], ids=["pipelining", "step-by-step"])
def smtp_sink(smtp_sink, request):
    """Every case against a relay that offers PIPELINING (as Postfix does) and one that
    does not: the replies read together must mean what they mean one by one."""
    smtp_sink.pipelining = request.param
    return smtp_sink


def item_for(job, address):
    return job.items.get(recipient_email=address)


def test_the_email_has_both_parts_the_vcard_and_the_headers(company, card, email_kind, smtp_sink):
    job = make_email_job(
        company,
        ["Jane Doe <jane@example.org>"],
        card=card,
        subject="My card",
        message="Great to meet you!",
    )
    run_once(email_kind)
    assert len(smtp_sink.messages) == 1
    received = smtp_sink.messages[0]
    message = received.message
    item = job.items.get()
    assert received.rcpt_tos == ["jane@example.org"]
    assert message["Subject"] == "My card"
    assert message["To"] == "Jane Doe <jane@example.org>"
    assert (
        message["Message-ID"] == f"<bulk-email.{job.pk}.{item.pk}.{job.message_id_key}@example.com>"
    )
    unsubscribe = "".join(str(message["List-Unsubscribe"]).split()).strip("<>")
    assert unsubscribe.startswith("http://localhost:8000/emails/unsubscribe/")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    assert "Great to meet you!" in text and "Ada Lovelace" in text and card.public_url in text
    assert "Ada Lovelace" in html and card.public_url in html and unsubscribe in html
    attachments = list(message.iter_attachments())
    assert [a.get_filename() for a in attachments] == ["ada-lovelace.vcf"]
    vcard = attachments[0].get_content()
    assert "FN:Ada Lovelace" in vcard and "ORG:Acme" in vcard

    # The one-click link works (RFC 8058 POST from a mail provider, no cookies).
    path = unsubscribe.removeprefix("http://localhost:8000")
    response = Client(enforce_csrf_checks=True).post(path, {"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert EmailSuppression.objects.filter(company=company, email="jane@example.org").exists()


def test_unsubscribed_addresses_are_not_emailed(company, email_kind, smtp_sink):
    EmailSuppression.objects.create(
        company=company, email="gone@example.org", reason="unsubscribed"
    )
    job = make_email_job(company, ["Gone@example.org", "here@example.org"])
    run_once(email_kind)
    assert smtp_sink.recipients() == ["here@example.org"]
    gone = item_for(job, "Gone@example.org")
    assert gone.status == Status.FAILED and "suppression list" in gone.reason


def test_a_tampered_unsubscribe_token_is_refused(company, client):
    from emails.unsubscribe import make_token

    token = make_token(company.pk, "x@example.org")
    assert client.get(f"/emails/unsubscribe/{token}/").status_code == 200
    forged = signing.dumps({"c": company.pk, "e": "victim@example.org"}, salt="wrong")
    assert client.post(f"/emails/unsubscribe/{forged}/", {}).status_code == 404
    assert not EmailSuppression.objects.exists()


def test_one_connection_per_batch(company, email_kind, smtp_sink):
    make_email_job(company, 30)
    run_once(email_kind)
    assert len(smtp_sink.messages) == 30
    assert smtp_sink.sessions == 1


def test_the_envelope_takes_one_round_trip_when_the_relay_offers_pipelining(
    company, email_kind, smtp_sink
):
    make_email_job(company, 4)
    run_once(email_kind)
    assert len(smtp_sink.messages) == 4
    # MAIL, RCPT and DATA arrived together for every message, and only when offered.
    assert smtp_sink.pipelined_envelopes == (4 if smtp_sink.pipelining else 0)


def test_a_354_after_every_recipient_was_refused_delivers_nothing_and_keeps_the_connection(
    company, email_kind, smtp_sink
):
    smtp_sink.data_without_recipients = True
    job = make_email_job(company, ["reject@example.org", "a@example.org"])
    run_once(email_kind)
    assert item_for(job, "reject@example.org").reason == "Rejected at RCPT: 550 5.1.1 No such user"
    # The empty message was ended properly, so the next one went over the same connection.
    assert item_for(job, "a@example.org").status == Status.COMPLETED
    assert smtp_sink.recipients() == ["a@example.org"] and smtp_sink.sessions == 1


def test_450_is_retried_later(company, email_kind, smtp_sink):
    job = make_email_job(company, ["tempfail@example.org", "a@example.org"])
    run_once(email_kind)
    item = item_for(job, "tempfail@example.org")
    assert item.status == Status.PENDING and item.attempts == 1 and item.next_attempt_at
    assert "450 4.2.0 Mailbox busy" in item.reason
    assert smtp_sink.recipients() == ["a@example.org"]


def test_550_fails_the_item_and_suppresses_the_address(company, email_kind, smtp_sink):
    job = make_email_job(company, ["reject@example.org", "a@example.org"])
    run_once(email_kind)
    item = item_for(job, "reject@example.org")
    assert item.status == Status.FAILED
    assert item.reason == "Rejected at RCPT: 550 5.1.1 No such user"
    assert EmailSuppression.objects.get(email="reject@example.org").reason == "bounced"
    assert smtp_sink.recipients() == ["a@example.org"]


def test_554_at_data_fails_the_item_without_suppressing(company, email_kind, smtp_sink):
    job = make_email_job(company, ["badcontent@example.org", "a@example.org"])
    run_once(email_kind)
    item = item_for(job, "badcontent@example.org")
    assert item.status == Status.FAILED and "554 5.6.0" in item.reason
    assert not EmailSuppression.objects.exists()
    assert smtp_sink.recipients() == ["a@example.org"]


def test_421_retries_the_item_and_reconnects_for_the_next(company, email_kind, smtp_sink):
    job = make_email_job(company, ["a@example.org", "closing@example.org", "b@example.org"])
    run_once(email_kind)
    item = item_for(job, "closing@example.org")
    assert item.status == Status.PENDING and "421" in item.reason
    assert smtp_sink.recipients() == ["a@example.org", "b@example.org"]
    assert smtp_sink.sessions == 2


def test_a_refused_sender_stops_the_batch_without_spending_attempts(
    company, email_kind, smtp_sink, settings
):
    settings.DEFAULT_FROM_EMAIL = "blocked@example.com"
    smtp_sink.refused_senders.add("blocked@example.com")
    job = make_email_job(company, 5)
    summary = run_once(email_kind)
    assert summary.paused and not smtp_sink.messages
    job.refresh_from_db()
    assert job.status == Status.PROCESSING
    assert "refused the sender" in job.reason and "DEFAULT_FROM_EMAIL" in job.reason
    assert set(job.items.values_list("status", "attempts")) == {(Status.PENDING, 0)}


def test_a_refused_login_stops_the_batch_without_spending_attempts(company, email_kind, settings):
    sink = SmtpSink(password="right").start()
    try:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", sink.port
        settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD = "cards", "wrong"
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        job = make_email_job(company, 3)
        summary = run_once(email_kind)
        job.refresh_from_db()
        assert "SMTP login refused (535" in job.reason
        assert summary.paused
        assert set(job.items.values_list("status", "attempts")) == {(Status.PENDING, 0)}

        settings.EMAIL_HOST_PASSWORD = "right"
        run_once(email_kind)
        job.refresh_from_db()
        assert job.status == Status.COMPLETED and len(sink.messages) == 3
    finally:
        sink.stop()


def test_a_server_that_is_down_pauses_the_batch(company, email_kind, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    job = make_email_job(company, 2)
    run_once(email_kind)
    job.refresh_from_db()
    assert "cannot connect to the mail server" in job.reason
    assert set(job.items.values_list("status", "attempts")) == {(Status.PENDING, 0)}


def test_prebuilt_bytes_match_a_freshly_built_message(company, card):
    """The fast path (substitution into cached bytes) sends what Django would have built."""
    from emails.message import CardEmail

    job = make_email_job(company, ["Zoë Ü <zoe@example.org>", "plain@example.org"], card=card)
    card_email = CardEmail(job, card)
    for item in job.items.select_related("card__company"):
        fast = card_email.prebuilt_for(item).message()
        slow = card_email.for_recipient(item).message()
        from email import message_from_bytes, policy

        fast_msg = message_from_bytes(fast.as_bytes(linesep="\r\n"), policy=policy.default)
        slow_msg = message_from_bytes(slow.as_bytes(linesep="\r\n"), policy=policy.default)
        for header in ("To", "Subject", "Message-ID", "List-Unsubscribe", "List-Unsubscribe-Post"):
            assert " ".join(str(fast_msg[header]).split()) == " ".join(
                str(slow_msg[header]).split()
            ), header
        for kind in ("plain", "html"):
            assert (
                fast_msg.get_body(preferencelist=(kind,)).get_content()
                == slow_msg.get_body(preferencelist=(kind,)).get_content()
            )
        assert [a.get_content() for a in fast_msg.iter_attachments()] == [
            a.get_content() for a in slow_msg.iter_attachments()
        ]


def test_a_broken_mail_setup_pauses_jobs_without_crashing_the_run(
    company, other_company, email_kind, settings, smtp_sink
):
    broken = make_email_job(company, 2)
    healthy = make_email_job(other_company, 2)
    settings.EMAIL_BACKEND = "no.such.EmailBackend"
    summary = run_once(email_kind)
    broken.refresh_from_db()
    assert broken.reason.startswith("Paused, will retry next run: unexpected error: ")
    assert set(broken.items.values_list("status", "attempts")) == {(Status.PENDING, 0)}
    assert summary.companies_served == 2

    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    run_once(email_kind)
    healthy.refresh_from_db()
    broken.refresh_from_db()
    assert healthy.status == broken.status == Status.COMPLETED
