"""A bounce produced by a real Postfix, read back: Postfix accepts a recipient at RCPT,
fails its delivery afterwards (an error transport: "5.1.1 mailbox gone") and sends its
own RFC 3464 bounce to the email's VERP envelope sender, which it delivers into the
Maildir of BOUNCE_ADDRESS (recipient_delimiter "+"). `process_bounces --maildir` and
`--stdin` read that very message.

The private Postfix instance is the one tests/processes/emails/test_smtp_postfix.py
runs, with a second virtual domain for the bounces and a transport map.
"""

import io
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest
from django.core.management import call_command

from bulkjobs.engine import run_once
from bulkjobs.models import Status
from emails.models import BulkEmailJobItem, EmailSuppression
from tests.conftest import make_email_job
from tests.processes.emails.test_smtp_postfix import PrivatePostfix, postfix_missing

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("usual_umask")]

BOUNCES = "bounces@bounce.example.com"


@pytest.fixture
def postfix(settings):
    missing = postfix_missing()
    if missing:
        pytest.skip(missing)
    base = Path(tempfile.mkdtemp(prefix="bizcards-postfix-bounces-"))
    base.chmod(0o755)
    instance = PrivatePostfix(base, ["good@example.org", "late@example.org"])
    with (instance.etc / "vmailbox").open("a") as vmailbox:
        vmailbox.write(f"{BOUNCES} bounces/\n")
    # Accepted at RCPT (late@ is a known mailbox), failed by the error transport after.
    (instance.etc / "transport").write_text("late@example.org error:5.1.1 mailbox gone\n")
    with (instance.etc / "main.cf").open("a") as main_cf:
        main_cf.write(
            "virtual_mailbox_domains = example.org, bounce.example.com\n"
            "recipient_delimiter = +\n"
            f"transport_maps = texthash:{instance.etc}/transport\n"
            # Else smtpd refuses at RCPT an address its transport says is an error.
            "smtpd_reject_unlisted_recipient = no\n"
        )
    try:
        instance.start()
        instance.send_through(settings)
        settings.BOUNCE_ADDRESS = BOUNCES
        yield instance
    finally:
        instance.stop()
        shutil.rmtree(base, ignore_errors=True)


def wait_for_bounce(postfix, timeout=30):
    new = postfix.mail / "bounces" / "new"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list(new.iterdir()) if new.exists() else []
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"No bounce reached {BOUNCES}:\n{postfix.log()}")


def test_a_postfix_bounce_after_acceptance_marks_the_item_and_suppresses(
    postfix, company, email_kind, tmp_path, monkeypatch
):
    job = make_email_job(company, ["good@example.org", "late@example.org"])
    run_once(email_kind)
    # Both accepted: the SMTP conversation ended with 250 for each.
    assert set(job.items.values_list("status", flat=True)) == {Status.COMPLETED}
    bounce_files = wait_for_bounce(postfix)
    assert len(bounce_files) == 1
    raw = bounce_files[0].read_bytes()
    assert b"report-type=delivery-status" in raw and b"5.1.1" in raw

    # The same message on standard input, as a pipe alias hands it over.
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(raw)))
    out = io.StringIO()
    call_command("process_bounces", "--stdin", stdout=out)
    assert out.getvalue().strip() == "Read 1 message(s): 1 hard"

    late = BulkEmailJobItem.objects.get(job=job, recipient_email="late@example.org")
    good = BulkEmailJobItem.objects.get(job=job, recipient_email="good@example.org")
    assert (late.status, late.bounce, late.bounce_status) == (
        Status.COMPLETED,
        BulkEmailJobItem.Bounce.HARD,
        "5.1.1",
    )
    assert "mailbox gone" in late.bounce_detail
    assert good.bounce == ""
    assert list(EmailSuppression.objects.values_list("email", "reason")) == [
        ("late@example.org", "bounced")
    ]

    # The Maildir Postfix wrote: the same report again changes nothing, and is moved.
    maildir = postfix.mail / "bounces"
    call_command("process_bounces", "--maildir", str(maildir), stdout=out)
    assert "Read 1 message(s): 1 duplicate" in out.getvalue()
    assert not list((maildir / "new").iterdir())
    assert len(list((maildir / "cur").iterdir())) == 1
    assert len(postfix.mailbox("good@example.org")) == 1
