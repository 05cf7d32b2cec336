"""ESP tracking webhooks into the suppression list: Postmark (HTTP basic auth) and Mailgun
(basic auth plus its HMAC signature), posted as the ESPs post them, through anymail's
own views and our `tracking` receiver."""

import base64
import hashlib
import hmac
import json

import pytest
from django.test import Client

from emails.models import EmailSuppression
from tests.conftest import make_email_job

pytestmark = pytest.mark.django_db

SECRET = "esp-hook:Zq8-not-a-real-secret"
SIGNING_KEY = "mailgun-signing-key-for-tests"
POSTMARK_URL = "/emails/anymail/postmark/tracking/"
MAILGUN_URL = "/emails/anymail/mailgun/tracking/"


@pytest.fixture(autouse=True)
def anymail_settings(settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": SECRET, "MAILGUN_WEBHOOK_SIGNING_KEY": SIGNING_KEY}
    return settings


@pytest.fixture
def sent_item(company):
    """An email job item of Acme's to jane@example.org, as if sent."""
    job = make_email_job(company, ["jane@example.org"])
    return job.items.get()


def metadata(item):
    return {"company": str(item.job.company_id), "job": str(item.job_id), "item": str(item.pk)}


def basic_auth(credentials=SECRET):
    return "Basic " + base64.b64encode(credentials.encode()).decode()


def post(url, payload, auth=SECRET):
    # The ESP posts without cookies or CSRF token: the views must not need one.
    client = Client(enforce_csrf_checks=True)
    headers = {"Authorization": basic_auth(auth)} if auth else {}
    return client.post(url, json.dumps(payload), content_type="application/json", headers=headers)


def postmark_bounce(item, type_="HardBounce", record_type="Bounce", email=None):
    """A Postmark bounce webhook body (shape of Postmark's docs and anymail's tests)."""
    return {
        "RecordType": record_type,
        "ID": 4323372036854775807,
        "Type": type_,
        "TypeCode": 1,
        "Name": "Hard bounce",
        "Tag": "",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Metadata": metadata(item),
        "ServerID": 23,
        "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": email or item.recipient_email,
        "From": "cards@example.com",
        "BouncedAt": "2026-11-28T10:00:00Z",
        "Inactive": True,
        "CanActivate": True,
        "Subject": "Hello",
        "MessageStream": "outbound",
    }


def suppressions():
    return set(EmailSuppression.objects.values_list("company_id", "email", "reason"))


def test_a_postmark_hard_bounce_suppresses_the_address_for_its_company(
    sent_item, company, other_company
):
    response = post(POSTMARK_URL, postmark_bounce(sent_item))

    assert response.status_code == 200
    assert suppressions() == {(company.pk, "jane@example.org", "bounced")}
    detail = EmailSuppression.objects.get().detail
    assert detail.startswith("Postmark reported bounced: The server was unable to deliver")


def test_a_postmark_spam_complaint_is_recorded_as_such(sent_item, company):
    complaint = postmark_bounce(sent_item, type_="SpamComplaint", record_type="SpamComplaint")

    assert post(POSTMARK_URL, complaint).status_code == 200

    assert suppressions() == {(company.pk, "jane@example.org", "complained")}


@pytest.mark.parametrize(
    "payload",
    [
        # Postmark keeps trying after a soft bounce: the address is still good.
        lambda item: postmark_bounce(item, type_="SoftBounce"),
        lambda item: {
            "RecordType": "Delivery",
            "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
            "Recipient": item.recipient_email,
            "DeliveredAt": "2026-11-28T10:00:00Z",
            "Metadata": metadata(item),
            "Details": "Test delivery webhook details",
        },
    ],
    ids=["soft bounce", "delivery"],
)
def test_events_that_do_not_end_sending_suppress_nothing(sent_item, payload):
    assert post(POSTMARK_URL, payload(sent_item)).status_code == 200
    assert suppressions() == set()


@pytest.mark.parametrize(
    "auth", [None, "esp-hook:wrong", SECRET + "x"], ids=["none", "wrong", "longer"]
)
def test_a_post_without_the_right_basic_auth_is_refused(sent_item, auth):
    response = post(POSTMARK_URL, postmark_bounce(sent_item), auth=auth)

    assert response.status_code == 400
    assert suppressions() == set()


def test_webhooks_are_off_until_a_secret_is_configured(sent_item, settings):
    # anymail alone would accept anyone's posts (with a warning).
    settings.ANYMAIL = {"MAILGUN_WEBHOOK_SIGNING_KEY": SIGNING_KEY}

    response = post(POSTMARK_URL, postmark_bounce(sent_item), auth=None)

    assert response.status_code == 403
    assert b"ANYMAIL_WEBHOOK_SECRET" in response.content
    assert suppressions() == set()


def test_the_item_decides_the_company_not_a_forged_company_id(company, other_company, sent_item):
    # Metadata naming another company for Acme's item: the item wins.
    forged = postmark_bounce(sent_item)
    forged["Metadata"]["company"] = str(other_company.pk)
    post(POSTMARK_URL, forged)
    assert suppressions() == {(company.pk, "jane@example.org", "bounced")}

    # An item id whose recipient is someone else suppresses nobody.
    EmailSuppression.objects.all().delete()
    post(POSTMARK_URL, postmark_bounce(sent_item, email="victim@example.org"))
    assert suppressions() == set()


def test_a_pruned_item_falls_back_to_the_company_in_the_metadata(sent_item, company):
    payload = postmark_bounce(sent_item)
    sent_item.job.delete()  # retention pruned the job and its items

    post(POSTMARK_URL, payload)

    assert suppressions() == {(company.pk, "jane@example.org", "bounced")}


def test_mail_not_sent_by_a_job_is_ignored(sent_item):
    payload = postmark_bounce(sent_item)
    payload["Metadata"] = {}

    assert post(POSTMARK_URL, payload).status_code == 200
    assert suppressions() == set()


def mailgun_event(item, event="failed", severity="permanent", key=SIGNING_KEY):
    """A Mailgun (new-style, JSON) webhook body, signed as Mailgun signs it."""
    timestamp, token = "1764324000", "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0"
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": {
            "event": event,
            "severity": severity,
            "reason": "bounce",
            "timestamp": 1764324000.37,
            "id": "G9Bn5sl1TC6nu79C8C0bwg",
            "recipient": item.recipient_email,
            "delivery-status": {
                "code": 550,
                "message": "5.1.1 The email account that you tried to reach does not exist.",
                "description": "",
            },
            "message": {"headers": {"to": item.recipient_email, "message-id": "abc@example.com"}},
            "user-variables": metadata(item),
            "tags": [],
        },
    }


def test_a_signed_mailgun_bounce_and_complaint(company, other_company):
    acme = make_email_job(company, ["jane@example.org"]).items.get()
    globex = make_email_job(other_company, ["joe@example.org"]).items.get()

    assert post(MAILGUN_URL, mailgun_event(acme)).status_code == 200
    assert post(MAILGUN_URL, mailgun_event(globex, event="complained")).status_code == 200
    # A temporary failure is Mailgun's to retry.
    assert post(MAILGUN_URL, mailgun_event(acme, severity="temporary")).status_code == 200

    assert suppressions() == {
        (company.pk, "jane@example.org", "bounced"),
        (other_company.pk, "joe@example.org", "complained"),
    }
    assert EmailSuppression.objects.get(company=company).detail == (
        "Mailgun reported bounced: 5.1.1 The email account that you tried to reach does not exist."
    )


@pytest.mark.parametrize("auth", [SECRET, None], ids=["basic auth right", "no basic auth"])
def test_a_wrongly_signed_mailgun_post_is_refused(sent_item, auth):
    response = post(MAILGUN_URL, mailgun_event(sent_item, key="someone-elses-key"), auth=auth)

    assert response.status_code == 400
    assert suppressions() == set()


def test_a_tampered_mailgun_event_fails_its_signature(sent_item):
    # The signature covers timestamp and token only; a replayed signature with a fresh
    # token is what an attacker could try.
    payload = mailgun_event(sent_item)
    payload["signature"]["token"] = "b" * 50

    assert post(MAILGUN_URL, payload).status_code == 400
    assert suppressions() == set()


def test_a_system_check_warns_of_an_esp_backend_without_webhook_secret(settings):
    from django.core.checks import run_checks

    def ids():
        return {message.id for message in run_checks(tags=["emails"])}

    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    assert "emails.W001" not in ids()  # the secret of the fixture
    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": "t"}
    assert "emails.W001" in ids()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    assert "emails.W001" not in ids()  # SMTP has no webhooks to secure
