"""A refusal is classified by its enhanced status code: only a dead address (5.1.x, a
disabled mailbox 5.2.1) is suppressed; a policy block (5.7.x), a routing problem (5.4.x)
and the rest fail the item and keep the address. The item says why in the reader's
language and keeps the server's words."""

import pytest
from django.utils import translation

from bulkjobs import reasons
from bulkjobs.engine import run_once
from bulkjobs.models import Status
from emails.models import EmailSuppression
from emails.status import classify, enhanced_code
from tests.conftest import make_email_job

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("reply", "code", "suppress"),
    [
        ("550 5.1.1 <a@b.example>: Recipient address rejected: User unknown", "5.1.1", True),
        ("550 5.1.10 Recipient address has null MX", "5.1.10", True),
        ("550 5.2.1 The email account that you tried to reach is disabled", "5.2.1", True),
        ("552 5.2.2 Mailbox full", "5.2.2", False),
        ("550 5.7.1 Service unavailable; client host blocked", "5.7.1", False),
        ("550 5.7.26 Unauthenticated email is not accepted", "5.7.26", False),
        ("554 5.4.6 Hop count exceeded", "5.4.6", False),
        # The sender's address, not the recipient's: never suppress the recipient.
        ("553 5.1.8 Sender address rejected: Domain not found", "5.1.8", False),
        ("554 5.6.0 Message content rejected", "5.6.0", False),
        # No enhanced code: a bare 550 may be a block as well as a dead address.
        ("550 Requested action not taken", "", False),
    ],
)
def test_classification_table(reply, code, suppress):
    assert enhanced_code(reply) == code
    assert classify(code).suppress is suppress


def test_a_version_number_or_an_address_is_no_status_code():
    assert enhanced_code("550 rejected by mx 10.1.2.3 (v1.2.3.4)") == ""


@pytest.mark.parametrize(
    ("address", "code", "suppressed", "german"),
    [
        ("reject@example.org", "smtp_address_unknown", True, "Die Adresse existiert nicht"),
        ("disabled@example.org", "smtp_mailbox_disabled", True, "Das Postfach ist deaktiviert"),
        ("blocked@example.org", "smtp_policy", False, "Richtlinie"),
        ("relaying@example.org", "smtp_routing", False, "nicht zum Mailserver"),
    ],
)
def test_a_refusal_fails_the_item_and_suppresses_only_a_dead_address(
    company, email_kind, smtp_sink, address, code, suppressed, german
):
    job = make_email_job(company, [address, "ok@example.org"])
    run_once(email_kind)
    item = job.items.get(recipient_email=address)
    assert item.status == Status.FAILED and item.attempts == 1
    assert item.reason_code == code
    # The server's own words are kept verbatim, and the reason column keeps its English.
    assert item.provider_reply.startswith("55")
    assert item.reason == f"Rejected at RCPT: {item.provider_reply}"
    on_list = EmailSuppression.objects.filter(company=company, email=address)
    assert on_list.exists() is suppressed
    if suppressed:
        assert on_list.get().reason == EmailSuppression.Reason.BOUNCED
    with translation.override("de"):
        words = reasons.describe(item)
    assert german in words and item.provider_reply in words
    assert job.items.get(recipient_email="ok@example.org").status == Status.COMPLETED


def test_a_policy_block_leaves_the_address_for_the_next_job(company, email_kind, smtp_sink):
    make_email_job(company, ["blocked@example.org"])
    run_once(email_kind)
    smtp_sink.rcpt_rule = None
    second = make_email_job(company, ["blocked@example.org"])
    run_once(email_kind)
    # Tried again (not skipped as suppressed): the server refused it once more.
    assert second.items.get().reason_code == "smtp_policy"
    assert [a for _peer, a, _ok in smtp_sink.rcpt_log].count("blocked@example.org") == 2
