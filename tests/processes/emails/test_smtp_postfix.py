"""Through a real Postfix on loopback: a list with many bad addresses is never throttled.

Postfix slows down a client that makes errors without delivering mail: after
smtpd_soft_error_limit (10) each reply waits smtpd_error_sleep_time (1 s; MAIL, RCPT and
RSET each wait, so ~3 s per bad recipient), and after smtpd_hard_error_limit (20) it
disconnects. A delivered message resets the count, RSET does not (measured against this
Postfix: 7 rejections, a delivery, 7 more replied at full speed; 10 in a row did not).

The test runs a private Postfix instance (its own configuration, queue and data
directories under a temporary directory, smtpd on a free loopback port, Maildir delivery
for a virtual domain whose unknown users are rejected at RCPT with 550 5.1.1). Debian's
package is installed by .ci/run; elsewhere the test is skipped, but with CI=true a
missing Postfix is a failure.
"""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from bulkjobs.engine import run_once
from bulkjobs.models import Status
from tests.conftest import make_email_job
from tests.smtp_sink import free_port

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("usual_umask")]

POSTFIX = shutil.which("postfix") or shutil.which("postfix", path="/usr/sbin:/usr/bin")

# The services a private instance needs: smtpd on {listen}, queueing, virtual delivery.
MASTER_CF = """\
{listen} inet n - n - - smtpd
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
virtual unix - n n - - virtual
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"""


def postfix_missing():
    if POSTFIX is None:
        return "Postfix is not installed (apt-get install postfix; .ci/run does it)"
    if os.geteuid() != 0:
        return "a private Postfix instance must be started as root"
    return None


class PrivatePostfix:
    """One Postfix instance under `base`, accepting mail for example.org on `port`."""

    def __init__(self, base, mailboxes):
        self.base = base
        self.etc, self.queue, self.data, self.mail = (
            base / name for name in ("etc", "queue", "data", "mail")
        )
        self.maillog = base / "maillog"
        self.port = free_port()
        self.master_pid = None
        nobody = pwd.getpwnam("nobody")
        postfix_user = pwd.getpwnam("postfix")
        for directory in (self.etc, self.queue, self.data, self.mail):
            directory.mkdir()
        os.chown(self.data, postfix_user.pw_uid, postfix_user.pw_gid)
        os.chown(self.mail, nobody.pw_uid, nobody.pw_gid)
        # "address mailbox/": the trailing slash asks for Maildir delivery.
        (self.etc / "vmailbox").write_text("".join(f"{m} {m}/\n" for m in mailboxes))
        (self.etc / "main.cf").write_text(
            f"""\
compatibility_level = 3.6
queue_directory = {self.queue}
data_directory = {self.data}
maillog_file = {self.maillog}
maillog_file_prefixes = {base}
myhostname = postfix-test.localdomain
mydestination =
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
virtual_mailbox_domains = example.org
virtual_mailbox_maps = texthash:{self.etc}/vmailbox
virtual_mailbox_base = {self.mail}
virtual_uid_maps = static:{nobody.pw_uid}
virtual_gid_maps = static:{nobody.pw_gid}
"""
        )
        (self.etc / "master.cf").write_text(MASTER_CF.format(listen=f"127.0.0.1:{self.port}"))

    def send_through(self, settings):
        """Make this instance the mail server the app sends through (plain SMTP)."""
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", self.port
        settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        settings.EMAIL_TIMEOUT = 30

    def postfix(self, command):
        return subprocess.run(
            [POSTFIX, "-c", str(self.etc), command], capture_output=True, text=True, timeout=60
        )

    def start(self):
        result = self.postfix("start")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                time.sleep(0.1)
                continue
            self.master_pid = int((self.queue / "pid" / "master.pid").read_text().split()[0])
            return
        raise RuntimeError(
            f"Postfix did not start listening on port {self.port}: "
            f"{result.stdout}{result.stderr}{self.log()}"
        )

    def stop(self):
        self.postfix("stop")
        if self.master_pid is None:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(self.master_pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        # Still running: end the master process this test started, by its pid.
        os.kill(self.master_pid, signal.SIGKILL)

    def log(self):
        return self.maillog.read_text() if self.maillog.exists() else "(no mail log)"

    def queued(self):
        """Messages still in Postfix's queues (not yet delivered or bounced)."""
        queues = ("maildrop", "incoming", "active", "deferred", "hold")
        return sum(1 for q in queues for p in (self.queue / q).rglob("*") if p.is_file())

    def mailbox(self, address):
        """The messages delivered to a mailbox, as bytes."""
        new = self.mail / address / "new"
        return [p.read_bytes() for p in new.iterdir()] if new.exists() else []

    def wait_until_delivered(self, count, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            delivered = sum(1 for _ in self.mail.glob("*/new/*"))
            if delivered >= count and not self.queued():
                return delivered
            time.sleep(0.1)
        raise AssertionError(f"Postfix delivered {delivered} of {count}:\n{self.log()}")


@pytest.fixture
def postfix(settings):
    missing = postfix_missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the Postfix test: {missing}")
        pytest.skip(missing)
    base = Path(tempfile.mkdtemp(prefix="bizcards-postfix-"))
    # Postfix's daemons (users postfix and nobody) must reach the queue and mailboxes.
    base.chmod(0o755)
    mailboxes = [f"good{n}@example.org" for n in range(40)]
    instance = PrivatePostfix(base, mailboxes)
    try:
        instance.start()
        instance.send_through(settings)
        yield instance
    finally:
        instance.stop()
        shutil.rmtree(base, ignore_errors=True)


def interleaved(runs):
    """Addresses from (good, bad) run lengths: good0.., bad0.., numbered in order."""
    addresses, good, bad = [], 0, 0
    for good_run, bad_run in runs:
        addresses += [f"good{good + n}@example.org" for n in range(good_run)]
        addresses += [f"bad{bad + n}@example.org" for n in range(bad_run)]
        good, bad = good + good_run, bad + bad_run
    return addresses


def slowest_item_seconds(job):
    """The longest time between two consecutive items' outcomes in the job (id order)."""
    times = list(job.items.order_by("id").values_list("processed_at", flat=True))
    return max((b - a).total_seconds() for a, b in zip(times, times[1:], strict=False))


def test_a_list_with_many_bad_addresses_is_never_throttled(
    postfix, company, other_company, email_kind
):
    # 20 good and 30 bad, with runs of 12 and 7 bad in a row (Postfix's limit is 10).
    recipients = interleaved([(2, 12), (4, 1), (3, 3), (2, 7), (5, 2), (3, 5), (1, 0)])
    assert len(recipients) == 50
    bad_list = make_email_job(company, recipients)
    # Another company's job in the same run must not wait behind the bad list.
    others = [f"good{n}@example.org" for n in range(20, 30)]
    other_job = make_email_job(other_company, others)

    started = time.monotonic()
    summary = run_once(email_kind, batch_size=50)
    elapsed = time.monotonic() - started
    slowest = max(slowest_item_seconds(bad_list), slowest_item_seconds(other_job))
    print(f"\nPostfix run: 60 emails in {elapsed:.2f} s; slowest item {slowest:.3f} s")

    assert summary.items_attempted == 60
    bad_list.refresh_from_db()
    other_job.refresh_from_db()
    assert (bad_list.status, bad_list.succeeded_items, bad_list.failed_items) == (
        Status.COMPLETED,
        20,
        30,
    )
    assert (other_job.status, other_job.succeeded_items) == (Status.COMPLETED, 10)
    for item in bad_list.items.filter(recipient_email__startswith="bad"):
        assert item.reason == (
            f"Rejected at RCPT: 550 5.1.1 <{item.recipient_email}>: Recipient address "
            "rejected: User unknown in virtual mailbox table"
        )
    # A throttled reply takes smtpd_error_sleep_time (1 s); unthrottled ones take ms.
    assert slowest < 1.0, postfix.log()

    postfix.wait_until_delivered(30)
    for job in (bad_list, other_job):
        for item in job.items.filter(status=Status.COMPLETED):
            delivered = postfix.mailbox(item.recipient_email)
            assert len(delivered) == 1, item.recipient_email
            assert (
                f"Message-ID: <bulk-email.{job.pk}.{item.pk}.{job.message_id_key}@".encode()
                in delivered[0]
            )
    assert not any(postfix.mailbox(f"bad{n}@example.org") for n in range(30))


def test_messages_through_postfix_carry_a_dkim_signature_that_verifies(
    postfix, company, card, email_kind, settings, tmp_path
):
    """What a mailbox provider gets through a real MTA: dkimpy verifies the signature
    against the configured key, both List-Unsubscribe fields are signed, every part is
    7bit-safe and no header line passes 998 octets (a 200-character umlaut name)."""
    import re
    from email import message_from_bytes, policy

    import dkim

    from tests.emails.test_deliverability import make_key

    key_file, record = make_key(tmp_path)
    settings.DKIM_DOMAIN, settings.DKIM_SELECTOR = "example.com", "bulk2026"
    settings.DKIM_PRIVATE_KEY_FILE = str(key_file)

    def dnsfunc(name, timeout=5):
        return record if name == b"bulk2026._domainkey.example.com." else None

    company.name, company.language = "Bücher & Söhne GmbH", "de"
    company.imprint = "Bücher & Söhne GmbH, Hauptstraße 1, 10115 Berlin\nHRB 12345 B"
    company.save()
    card.company = company
    long_name = ("Jürgen-Ölaf Müßiggang-Äßler " * 8)[:200].strip()
    recipients = [f"{long_name} <good0@example.org>"] + [f"good{n}@example.org" for n in (1, 2)]
    job = make_email_job(company, recipients, card=card, message="Grüße   aus Berlin  \n")

    run_once(email_kind, batch_size=50)
    job.refresh_from_db()
    assert (job.status, job.succeeded_items) == (Status.COMPLETED, 3), job.reason

    postfix.wait_until_delivered(3)
    for n in range(3):
        [data] = postfix.mailbox(f"good{n}@example.org")
        # Maildir stores LF line ends, as Postfix's local delivery writes them.
        data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        # Postfix put its Return-Path, Delivered-To and Received on top; the signature
        # below them still verifies.
        assert data.startswith(b"Return-Path:") and b"Received: from " in data
        assert dkim.verify(data, dnsfunc=dnsfunc), postfix.log()
        parsed = message_from_bytes(data, policy=policy.default)
        signed = re.sub(r"\s", "", str(parsed["DKIM-Signature"])).split("h=")[1].split(";")[0]
        assert {"list-unsubscribe", "list-unsubscribe-post", "feedback-id"} <= set(
            signed.split(":")
        )
        assert all(byte < 128 for byte in data)
        assert max(len(line) for line in data.split(b"\r\n")) <= 998
        for part in parsed.walk():
            if not part.is_multipart():
                assert part["Content-Transfer-Encoding"] in ("7bit", "base64", "quoted-printable")
        text = parsed.get_body(preferencelist=("plain",)).get_content()
        assert "Angaben zu Bücher & Söhne GmbH:" in text and "HRB 12345 B" in text
