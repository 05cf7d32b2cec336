"""Recipients appear in the logs by domain only, even when a server quotes the full address in
its reply; the item's reason, shown to the company, keeps the provider's full words."""

import logging
import smtplib
from pathlib import Path

import pytest

from bulkjobs.engine import run_once
from bulkjobs.models import Status
from bulkjobs.ops.logredact import RedactEmailAddresses, redact_addresses
from tests.conftest import make_email_job

pytestmark = pytest.mark.django_db


@pytest.fixture
def log_file():
    """The configured log file (config/settings.py LOGGING); yields a reader of what is new."""
    [handler] = [h for h in logging.getLogger().handlers if h.get_name() == "file"]
    path = Path(handler.baseFilename)
    start = path.stat().st_size if path.exists() else 0

    def new_text():
        handler.flush()
        with path.open("rb") as f:
            f.seek(start)
            return f.read().decode("utf-8")

    return new_text


def test_every_configured_handler_redacts():
    handlers = logging.getLogger().handlers
    assert {"console", "file"} <= {h.get_name() for h in handlers}
    for handler in handlers:
        if handler.get_name() in ("console", "file"):
            assert any(isinstance(f, RedactEmailAddresses) for f in handler.filters)


def test_a_quoted_address_in_a_rejection_reaches_the_log_by_domain_only(
    company, email_kind, smtp_sink, log_file
):
    job = make_email_job(company, ["unknown@example.org", "ok.person@example.net"])
    run_once(email_kind)
    rejected = job.items.get(recipient_email="unknown@example.org")
    assert rejected.status == Status.FAILED
    # The company sees the server's full words.
    assert rejected.reason == (
        "Rejected at RCPT: 550 5.1.1 <unknown@example.org>: "
        "Recipient address rejected: User unknown"
    )
    logged = log_file()
    assert "<…@example.org>: Recipient address rejected: User unknown" in logged
    assert "unknown@" not in logged and "ok.person@" not in logged


def test_tracebacks_are_redacted_too(log_file):
    log = logging.getLogger("ProcessBulkEmailJob")
    try:
        raise smtplib.SMTPRecipientsRefused(
            {"jane.doe@example.com": (550, b"<jane.doe@example.com>")}
        )
    except smtplib.SMTPRecipientsRefused:
        log.exception("Sending to %s failed", "jane.doe@example.com")
    logged = log_file()
    assert "Sending to …@example.com failed" in logged
    assert "SMTPRecipientsRefused: {'…@example.com': (550, b'<…@example.com>')}" in logged
    assert "jane.doe" not in logged


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("to jane@example.com.", "to …@example.com."),
        ("<o'brien+tag@mail.example.co.uk>", "<…@mail.example.co.uk>"),
        ("Zoë.Müller@bücher.example", "…@bücher.example"),
        ("smtp://user:secret@mail.example.com:587", "smtp://user:…@mail.example.com:587"),
        ("item 12 (to …@example.org) succeeded", "item 12 (to …@example.org) succeeded"),
        ("no address @ all, user@localhost", "no address @ all, user@localhost"),
    ],
)
def test_redact_addresses(text, expected):
    assert redact_addresses(text) == expected
