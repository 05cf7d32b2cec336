"""Bounces read back: each email leaves with a signed VERP envelope sender, and what comes
back to it (an RFC 3464 report, a non-standard bounce, an RFC 5965 complaint) is read by
`manage.py process_bounces` from standard input or a Maildir and marks that item; the
address is suppressed only when certainly dead, or on a complaint. Forged tokens,
auto-replies and the same report read twice change nothing."""

import io
import ssl
import sys
from email.message import EmailMessage
from email.mime.base import MIMEBase
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings
from django.urls import reverse

from bulkjobs.engine import run_once
from bulkjobs.models import Status
from emails import verp
from emails.models import BulkEmailJobItem, EmailSuppression
from tests.conftest import make_email_job

pytestmark = pytest.mark.django_db

BOUNCES = "bounces@bounce.example.com"
Bounce = BulkEmailJobItem.Bounce


@pytest.fixture
def sent(company, email_kind, smtp_sink, settings):
    """A job of two emails, sent through the sink with BOUNCE_ADDRESS set: the items and
    the VERP envelope sender each left with."""
    settings.BOUNCE_ADDRESS = BOUNCES
    job = make_email_job(company, ["gone@example.org", "fine@example.org"])
    run_once(email_kind)
    items = {i.recipient_email: i for i in job.items.all()}
    assert all(i.status == Status.COMPLETED for i in items.values())
    senders = {m.rcpt_tos[0]: m.mail_from for m in smtp_sink.messages}
    return job, items, senders


def postfix_dsn(verp_address, recipient, *, action="failed", status="5.1.1", diagnostic=None):
    """A bounce as Postfix writes it (multipart/report, report-type=delivery-status)."""
    diagnostic = diagnostic or f"smtp; 550 {status} <{recipient}>: Recipient address rejected"
    text = f"""\
Return-Path: <>
Delivered-To: {verp_address}
From: MAILER-DAEMON@mx.example.org (Mail Delivery System)
To: {verp_address}
Subject: Undelivered Mail Returned to Sender
Message-ID: <bounce.{status}.{action}.{recipient}@mx.example.org>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="B0UNDARY"

--B0UNDARY
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

--B0UNDARY
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org
Arrival-Date: Sun,  6 Dec 2026 11:00:00 +0000 (UTC)

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: {action}
Status: {status}
Remote-MTA: dns; mail.example.org
Diagnostic-Code: {diagnostic}

--B0UNDARY
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

From: cards@example.com
To: {recipient}
Subject: Hello

--B0UNDARY--
"""
    return text.replace("\n", "\r\n").encode()


def feedback_report(verp_address, recipient):
    """An RFC 5965 complaint (ARF), sent to the feedback loop's address: the token is in
    the original's Return-Path only."""
    report = MIMEMultipart("report", report_type="feedback-report")
    report["From"] = "fbl@provider.example"
    report["To"] = "abuse-desk@example.com"
    report["Subject"] = "Complaint about message"
    report["Message-ID"] = "<arf.1@provider.example>"
    report.attach(MIMEText("This is an email abuse report for an email message.\n"))
    feedback = MIMEBase("message", "feedback-report")
    feedback.set_payload(
        "Feedback-Type: abuse\nUser-Agent: SomeGenerator/1.0\nVersion: 1\n"
        "Original-Mail-From: <" + verp_address + ">\n"
    )
    report.attach(feedback)
    original = EmailMessage()
    original["Return-Path"] = f"<{verp_address}>"
    original["From"] = "cards@example.com"
    original["To"] = recipient
    original["Subject"] = "Hello"
    original.set_content("The card")
    report.attach(MIMEMessage(original))
    return report.as_bytes()


def process_stdin(monkeypatch, raw, *args):
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(raw)))
    call_command("process_bounces", "--stdin", *args, stdout=out)
    return out.getvalue()


def maildir(tmp_path, *messages):
    for sub in ("new", "cur", "tmp"):
        (tmp_path / sub).mkdir()
    for n, raw in enumerate(messages):
        (tmp_path / "new" / f"1733400000.{n}.host").write_bytes(raw)
    return tmp_path


def test_each_email_leaves_with_its_own_signed_verp_sender(sent):
    _job, items, senders = sent
    for address, item in items.items():
        sender = senders[address]
        local, _, domain = sender.partition("@")
        assert domain == "bounce.example.com" and local.startswith("bounces+")
        assert len(local) <= 64
        assert verp.item_pk_for_token(local.removeprefix("bounces+")) == item.pk


def test_without_bounce_address_the_envelope_sender_is_the_from(
    company, email_kind, smtp_sink, settings
):
    settings.BOUNCE_ADDRESS = ""
    make_email_job(company, ["a@example.org"])
    run_once(email_kind)
    assert smtp_sink.messages[0].mail_from == "cards@example.com"


def test_a_hard_bounce_on_stdin_marks_the_item_and_suppresses_the_address(
    sent, monkeypatch, company
):
    job, items, senders = sent
    raw = postfix_dsn(senders["gone@example.org"], "gone@example.org")
    assert "1 hard" in process_stdin(monkeypatch, raw)
    gone = BulkEmailJobItem.objects.get(pk=items["gone@example.org"].pk)
    assert (gone.status, gone.bounce, gone.bounce_status) == (
        Status.COMPLETED,
        Bounce.HARD,
        "5.1.1",
    )
    assert "Recipient address rejected" in gone.bounce_detail
    suppression = EmailSuppression.objects.get(company=company)
    assert (suppression.email, suppression.reason) == ("gone@example.org", "bounced")
    fine = BulkEmailJobItem.objects.get(pk=items["fine@example.org"].pk)
    assert fine.bounce == "" and fine.bounced_at is None
    job.refresh_from_db()
    assert job.succeeded_items == 2  # sent is sent: the counters stay

    # Read again (an MTA delivering twice): nothing more happens.
    assert "1 duplicate" in process_stdin(monkeypatch, raw)


def test_a_maildir_is_read_and_its_messages_moved_to_cur(sent, tmp_path, company):
    _job, items, senders = sent
    box = maildir(
        tmp_path,
        postfix_dsn(senders["gone@example.org"], "gone@example.org"),
        postfix_dsn(senders["fine@example.org"], "fine@example.org", status="5.7.1"),
    )
    out = io.StringIO()
    call_command("process_bounces", "--maildir", str(box), stdout=out)
    assert out.getvalue().strip() == "Read 2 message(s): 1 hard, 1 failed"
    assert not list((box / "new").iterdir())
    assert sorted(p.name for p in (box / "cur").iterdir()) == [
        "1733400000.0.host:2,S",
        "1733400000.1.host:2,S",
    ]
    assert BulkEmailJobItem.objects.get(pk=items["gone@example.org"].pk).bounce == Bounce.HARD
    # 5.7.1 after acceptance: marked, the address kept.
    fine = BulkEmailJobItem.objects.get(pk=items["fine@example.org"].pk)
    assert (fine.bounce, fine.bounce_status) == (Bounce.FAILED, "5.7.1")
    assert list(EmailSuppression.objects.values_list("email", flat=True)) == ["gone@example.org"]

    # Run again: new/ is empty, nothing is read twice.
    call_command("process_bounces", "--maildir", str(box), stdout=out)
    assert "Read 0 message(s): nothing" in out.getvalue()


def test_a_complaint_suppresses_as_a_complaint(sent, monkeypatch, company):
    _job, items, senders = sent
    raw = feedback_report(senders["fine@example.org"], "fine@example.org")
    assert "1 complaint" in process_stdin(monkeypatch, raw)
    item = BulkEmailJobItem.objects.get(pk=items["fine@example.org"].pk)
    assert item.bounce == Bounce.COMPLAINT
    suppression = EmailSuppression.objects.get(company=company)
    assert (suppression.email, suppression.reason) == ("fine@example.org", "complained")


def test_a_forged_token_changes_nothing(sent, monkeypatch, settings):
    _job, items, senders = sent
    pk = items["fine@example.org"].pk
    # The right item, signed with another key; and our signature on another item.
    with override_settings(SECRET_KEY="not-the-platforms-key-" * 3):
        forged = verp.envelope_sender(pk)
    real_signature = senders["fine@example.org"].split("-", 1)[1]
    other_item = f"bounces+{verp._base36(pk + 1)}-{real_signature}"
    for address in (forged, other_item):
        assert "1 forged" in process_stdin(monkeypatch, postfix_dsn(address, "fine@example.org"))
    assert not BulkEmailJobItem.objects.exclude(bounce="").exists()
    assert not EmailSuppression.objects.exists()


def test_a_delay_counts_a_soft_bounce_and_never_downgrades_a_hard_one(sent, monkeypatch):
    _job, items, senders = sent
    sender = senders["gone@example.org"]
    delayed = postfix_dsn(
        sender, "gone@example.org", action="delayed", status="4.2.2", diagnostic="smtp; 452 full"
    )
    assert "1 soft" in process_stdin(monkeypatch, delayed)
    item = BulkEmailJobItem.objects.get(pk=items["gone@example.org"].pk)
    assert (item.bounce, item.soft_bounces) == (Bounce.SOFT, 1)
    assert not EmailSuppression.objects.exists()
    process_stdin(monkeypatch, postfix_dsn(sender, "gone@example.org"))
    later = postfix_dsn(sender, "gone@example.org", action="delayed", status="4.4.1")
    process_stdin(monkeypatch, later.replace(b"<bounce.", b"<bounce.later."))
    item.refresh_from_db()
    assert (item.bounce, item.bounce_status, item.soft_bounces) == (Bounce.HARD, "5.1.1", 2)


def test_an_auto_reply_is_ignored(sent, monkeypatch):
    _job, items, senders = sent
    reply = EmailMessage()
    reply["From"] = "fine@example.org"
    reply["To"] = senders["fine@example.org"]
    reply["Subject"] = "Automatic reply: Hello"
    reply["Auto-Submitted"] = "auto-replied"
    reply.set_content("I am out of the office until Monday; 5.1.1 is not a status here.")
    assert "1 ignored" in process_stdin(monkeypatch, reply.as_bytes())
    assert not BulkEmailJobItem.objects.exclude(bounce="").exists()


def test_a_non_standard_bounce_is_read_by_flufl_bounce(sent, monkeypatch):
    """qmail's own format: no report, the address and the reply in the text."""
    _job, items, senders = sent
    bounce = EmailMessage()
    bounce["From"] = "MAILER-DAEMON@mx.example.org"
    bounce["To"] = senders["gone@example.org"]
    bounce["Subject"] = "failure notice"
    bounce["Message-ID"] = "<qmail.1@mx.example.org>"
    bounce.set_content(
        "Hi. This is the qmail-send program at mx.example.org.\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
        "<gone@example.org>:\n"
        "192.0.2.7 does not like recipient.\n"
        "Remote host said: 550 5.1.1 <gone@example.org>: No such user\n"
        "Giving up on 192.0.2.7.\n\n"
        "--- Below this line is a copy of the message.\n"
    )
    assert "1 hard" in process_stdin(monkeypatch, bounce.as_bytes())
    item = BulkEmailJobItem.objects.get(pk=items["gone@example.org"].pk)
    assert (item.bounce, item.bounce_status) == (Bounce.HARD, "5.1.1")
    assert EmailSuppression.objects.filter(email="gone@example.org").exists()


def test_the_envelope_recipient_from_postfix_is_taken_first(sent, monkeypatch):
    _job, items, senders = sent
    raw = postfix_dsn("someone-else@example.com", "gone@example.org")
    # Without the envelope recipient, the only token is not in this message.
    assert "1 no token" in process_stdin(monkeypatch, raw)
    monkeypatch.setenv("ORIGINAL_RECIPIENT", senders["gone@example.org"])
    assert "1 hard" in process_stdin(monkeypatch, raw)


def test_the_job_page_and_csv_show_the_bounce(sent, monkeypatch, client, owner):
    job, _items, senders = sent
    process_stdin(monkeypatch, postfix_dsn(senders["gone@example.org"], "gone@example.org"))
    client.force_login(owner)
    page = client.get(reverse("bulkjobs:job_detail", args=["email", job.pk])).content.decode()
    assert "Bounced after delivery: address undeliverable" in page and "5.1.1" in page
    response = client.get(reverse("bulkjobs:job_items_csv", args=["email", job.pk]))
    csv = b"".join(response.streaming_content).decode()
    header, *rows = csv.splitlines()
    assert "Bounce" in header and "Bounce status" in header
    gone = next(row for row in rows if "gone@example.org" in row)
    assert "Bounced after delivery: address undeliverable" in gone and "5.1.1" in gone
    job.company.language = "de"
    job.company.save()
    page = client.get(reverse("bulkjobs:job_detail", args=["email", job.pk])).content.decode()
    assert "Nach der Zustellung zurückgewiesen: Adresse unzustellbar" in page
    assert "Rückläufer-Status" in page


def test_the_command_needs_a_bounce_address(settings):
    settings.BOUNCE_ADDRESS = ""
    with pytest.raises(CommandError, match="BOUNCE_ADDRESS"):
        call_command("process_bounces", "--stdin")


def test_check_deploy_warns_without_a_bounce_address(settings):
    from emails.checks import check_bounce_address

    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.BOUNCE_ADDRESS = ""
    assert [w.id for w in check_bounce_address(None)] == ["emails.W005"]
    settings.BOUNCE_ADDRESS = BOUNCES
    assert check_bounce_address(None) == []
    settings.BOUNCE_ADDRESS = "bounces+x@bounce.example.com"
    assert [w.id for w in check_bounce_address(None)] == ["emails.E004"]


def test_an_imap_mailbox_is_read_over_tls_and_flagged_seen(sent, tmp_path, settings):
    from emails import bounce_sources
    from tests.emails.imap_server import ImapServer

    _job, items, senders = sent
    user, password = "bounces@bounce.example.com", "p@ss:w/rd"
    server = ImapServer(
        tmp_path,
        user,
        password,
        [postfix_dsn(senders["gone@example.org"], "gone@example.org")],
    ).start()
    try:
        settings.BOUNCE_IMAP_URL = (
            f"imaps://bounces%40bounce.example.com:p%40ss%3Aw%2Frd@127.0.0.1:{server.port}/INBOX"
        )
        results = bounce_sources.from_imap(ssl_context=server.client_context())
        assert dict(results) == {"hard": 1}
        assert server.logins == [user] and all(m.seen for m in server.messages)
        assert BulkEmailJobItem.objects.get(pk=items["gone@example.org"].pk).bounce == Bounce.HARD
        # Seen: the next reading finds nothing.
        assert not bounce_sources.from_imap(ssl_context=server.client_context())
        # A certificate nobody vouches for is refused before the password is sent.
        with pytest.raises(ssl.SSLError):
            bounce_sources.from_imap()
        assert server.logins == [user, user]
    finally:
        server.stop()


def test_an_imap_url_without_tls_is_refused(settings):
    from django.core.exceptions import ImproperlyConfigured

    from emails import bounce_sources

    settings.BOUNCE_IMAP_URL = "imap://u:p@127.0.0.1/INBOX"
    with pytest.raises(ImproperlyConfigured, match="TLS"):
        bounce_sources.from_imap()


@pytest.mark.parametrize(
    "token", ["", "3f", "-abc", "3f-", "é1-aaaaaaaaaa", "zzzzzzzzzzzzzz-aaaaaaaaaa", "0-x"]
)
def test_a_malformed_token_names_no_item(token):
    assert verp.item_pk_for_token(token) is None
