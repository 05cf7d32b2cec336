"""Sending through an ESP's API with django-anymail: its real Postmark backend against a
loopback server answering like Postmark (tests/emails/esp_server.py), and anymail's
test backend. Each ESP answer must lead to the same outcome an SMTP reply of that kind
does: delivered, failed and suppressed, retried later, batch paused, or delivery unknown."""

import pytest
from anymail.exceptions import AnymailAPIError
from anymail.message import AnymailRecipientStatus
from anymail.signals import pre_send
from django.core import mail
from django.utils import timezone

from bulkjobs.engine import run_once
from bulkjobs.models import Status
from emails.models import EmailSuppression
from tests.conftest import make_email_job
from tests.smtp_sink import free_port

from .esp_server import TOKEN, FakePostmark

pytestmark = pytest.mark.django_db


@pytest.fixture
def postmark(settings):
    with FakePostmark() as server:
        settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
        settings.ANYMAIL = {
            "POSTMARK_SERVER_TOKEN": TOKEN,
            "POSTMARK_API_URL": server.url,
            "REQUESTS_TIMEOUT": 1,
        }
        yield server


def item(job, address):
    return job.items.get(recipient_email=address)


def test_a_card_email_through_postmarks_api(company, card, email_kind, postmark):
    job = make_email_job(
        company, ["Jane Doe <jane@example.org>"], card=card, subject="My card", message="Hi!"
    )

    run_once(email_kind)

    job.refresh_from_db()
    assert job.status == Status.COMPLETED
    [sent] = postmark.sent()
    jane = job.items.get()
    assert sent["To"] == "Jane Doe <jane@example.org>"
    assert sent["Subject"] == "My card"
    assert sent["ReplyTo"] == "Ada Lovelace <ada@example.com>"
    assert "Hi!" in sent["TextBody"] and card.public_url in sent["HtmlBody"]
    assert [a["Name"] for a in sent["Attachments"]] == ["ada-lovelace.vcf"]
    headers = {h["Name"]: h["Value"] for h in sent["Headers"]}
    assert (
        headers["Message-ID"] == f"<bulk-email.{job.pk}.{jane.pk}.{job.message_id_key}@example.com>"
    )
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # Echoed back by Postmark's webhooks, so a bounce finds its company.
    assert sent["Metadata"] == {
        "company": str(company.pk),
        "job": str(job.pk),
        "item": str(jane.pk),
    }


def test_refused_recipients_fail_and_are_suppressed_the_rest_is_sent(company, email_kind, postmark):
    job = make_email_job(
        company,
        ["inactive@example.org", "ok1@example.org", "invalid@example.org", "ok2@example.org"],
    )

    run_once(email_kind)

    job.refresh_from_db()
    assert (job.status, job.succeeded_items, job.failed_items) == (Status.COMPLETED, 2, 2)
    inactive = item(job, "inactive@example.org")
    assert inactive.status == Status.FAILED
    assert "Rejected by Postmark: recipient rejected" in inactive.reason
    assert "marked as inactive" in inactive.reason
    assert "recipient invalid" in item(job, "invalid@example.org").reason
    suppressed = dict(
        EmailSuppression.objects.filter(company=company).values_list("email", "reason")
    )
    assert suppressed == {"inactive@example.org": "rejected", "invalid@example.org": "rejected"}
    assert sorted(s["To"] for s in postmark.sent()) == ["ok1@example.org", "ok2@example.org"]

    # The next job does not even ask Postmark about them.
    asked = len(postmark.requests)
    later = make_email_job(company, ["inactive@example.org"])
    run_once(email_kind)
    assert len(postmark.requests) == asked
    assert "suppression list" in item(later, "inactive@example.org").reason


def test_another_refusal_fails_the_item_without_suppressing(company, email_kind, postmark):
    job = make_email_job(company, ["badmeta@example.org"])

    run_once(email_kind)

    badmeta = item(job, "badmeta@example.org")
    assert badmeta.status == Status.FAILED
    assert badmeta.reason == "Refused by Postmark: 422 Invalid metadata content."
    assert not EmailSuppression.objects.exists()


def test_rate_limit_and_server_errors_are_retried_later(company, email_kind, postmark):
    job = make_email_job(company, ["ratelimited@example.org", "servererror@example.org"])

    run_once(email_kind)

    limited, broken = item(job, "ratelimited@example.org"), item(job, "servererror@example.org")
    assert (limited.status, limited.attempts) == (Status.PENDING, 1)
    assert limited.reason == "Postmark rate limit: 429 Rate limit exceeded."
    # Postmark's Retry-After (an hour) outweighs the usual backoff (at most 10 minutes).
    assert limited.next_attempt_at - timezone.now() > timezone.timedelta(minutes=59)
    assert (broken.status, broken.attempts) == (Status.PENDING, 1)
    assert broken.reason == "Postmark temporary failure: 500 Internal server error."
    assert not EmailSuppression.objects.exists()


def test_a_refused_api_key_pauses_the_batch_without_spending_attempts(
    company, email_kind, postmark, settings
):
    settings.ANYMAIL = {**settings.ANYMAIL, "POSTMARK_SERVER_TOKEN": "revoked"}
    job = make_email_job(company, 3)

    summary = run_once(email_kind)

    job.refresh_from_db()
    assert summary.paused
    assert "Postmark refused the API key (401 Request does not contain a valid Server token.)" in (
        job.reason
    )
    assert set(job.items.values_list("status", "attempts")) == {(Status.PENDING, 0)}
    assert len(postmark.requests) == 1  # one refusal stops the batch

    settings.ANYMAIL = {**settings.ANYMAIL, "POSTMARK_SERVER_TOKEN": TOKEN}
    run_once(email_kind)
    job.refresh_from_db()
    assert job.status == Status.COMPLETED and len(postmark.sent()) == 3


def test_an_unreachable_api_pauses_the_batch(company, email_kind, settings):
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = {
        "POSTMARK_SERVER_TOKEN": TOKEN,
        "POSTMARK_API_URL": f"http://127.0.0.1:{free_port()}/",
    }
    job = make_email_job(company, 2)

    run_once(email_kind)

    job.refresh_from_db()
    assert "cannot reach Postmark's API" in job.reason
    assert set(job.items.values_list("status", "attempts")) == {(Status.PENDING, 0)}


def test_no_answer_after_the_request_was_sent_is_delivery_unknown(company, email_kind, postmark):
    job = make_email_job(company, ["slow@example.org", "after@example.org"])

    run_once(email_kind)

    slow = item(job, "slow@example.org")
    assert slow.status == Status.FAILED
    assert slow.reason.startswith(
        "Delivery unknown: Postmark received the request but did not answer (ReadTimeout)"
    )
    # At most once: not retried, and the batch went on.
    assert [r["body"]["To"] for r in postmark.requests].count("slow@example.org") == 1
    assert item(job, "after@example.org").status == Status.COMPLETED


# anymail's test backend: the outbox, and answers a pre_send receiver scripts per message.


@pytest.fixture
def test_backend(settings):
    settings.EMAIL_BACKEND = "anymail.backends.test.EmailBackend"
    settings.ANYMAIL = {}
    mail.outbox = []
    answers = {}

    def script(sender, message, esp_name, **kwargs):
        answer = answers.get(message.to[0])
        if answer is not None:
            message.anymail_test_response = answer

    pre_send.connect(script, dispatch_uid="test-esp-answers")
    yield answers
    pre_send.disconnect(dispatch_uid="test-esp-answers")


def rejected(address):
    return {"recipient_status": {address: AnymailRecipientStatus(None, "rejected")}}


def test_the_test_backend_gets_the_rendered_message_with_metadata(
    company, card, email_kind, test_backend
):
    job = make_email_job(company, ["jane@example.org"], card=card)

    run_once(email_kind)

    [sent] = mail.outbox
    params = sent.anymail_test_params
    assert params["metadata"]["company"] == str(company.pk)
    assert params["metadata"]["item"] == str(job.items.get().pk)
    assert [str(a) for a in params["reply_to"]] == ["Ada Lovelace <ada@example.com>"]
    assert "Ada Lovelace" in params["text_body"]
    assert job.items.get().status == Status.COMPLETED


@pytest.mark.parametrize("ignore_recipient_status", [False, True])
def test_a_rejected_status_fails_and_suppresses_whether_or_not_anymail_raises(
    company, email_kind, test_backend, settings, ignore_recipient_status
):
    # By default anymail raises AnymailRecipientsRefused; with IGNORE_RECIPIENT_STATUS
    # the send returns and only the status says so.
    settings.ANYMAIL = {"IGNORE_RECIPIENT_STATUS": ignore_recipient_status}
    test_backend["no@example.org"] = rejected("no@example.org")
    job = make_email_job(company, ["no@example.org", "yes@example.org"])

    run_once(email_kind)

    no = item(job, "no@example.org")
    assert no.status == Status.FAILED and "recipient rejected" in no.reason
    assert item(job, "yes@example.org").status == Status.COMPLETED
    assert EmailSuppression.objects.get(company=company).email == "no@example.org"


def test_an_api_error_without_a_status_is_left_to_the_engine(company, email_kind, test_backend):
    test_backend["odd@example.org"] = AnymailAPIError("Unparsable test response")
    job = make_email_job(company, ["odd@example.org"])

    run_once(email_kind)

    odd = item(job, "odd@example.org")
    assert odd.status == Status.PENDING
    assert odd.reason == "Unexpected error: AnymailAPIError: Unparsable test response"
