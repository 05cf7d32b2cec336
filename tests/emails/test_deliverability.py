"""Deliverability of the card emails (#21), through the real SMTP sink: DKIM signatures
that dkimpy verifies, 7bit parts, folded headers, the company named in From, Feedback-ID,
Content-Language, the greeting name, and the DKIM system checks.

The DKIM key is made at test time (never committed) and "published" to dkimpy through
its dnsfunc, the one network boundary of a verification.
"""

import base64
import re
import socket
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.utils import getaddresses

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.exceptions import ImproperlyConfigured

from bulkjobs.engine import run_once
from bulkjobs.models import Status
from emails import checks as email_checks
from emails import signing
from emails.message import CardEmail
from tests.conftest import make_email_job

pytestmark = pytest.mark.django_db

#: A 200-character display name full of umlauts: unfolded, its To line was 1,069 octets.
LONG_NAME = ("Jürgen-Ölaf Müßiggang-Äßler " * 8)[:200].strip()


def make_key(tmp_path, bits=2048):
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    path = tmp_path / "dkim.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return path, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


@pytest.fixture
def dkim_key(tmp_path, settings):
    """The app signs as cards._domainkey.example.com; returns dkimpy's DNS lookup."""
    path, record = make_key(tmp_path)
    settings.DKIM_DOMAIN, settings.DKIM_SELECTOR = "example.com", "cards"
    settings.DKIM_PRIVATE_KEY_FILE = str(path)
    lookups = []

    def dnsfunc(name, timeout=5):
        lookups.append(name)
        return record if name == b"cards._domainkey.example.com." else None

    dnsfunc.lookups = lookups
    return dnsfunc


def signed_headers(data):
    parsed = message_from_bytes(data, policy=policy.default)
    tags = dict(
        (k.strip(), v)
        for k, _, v in (t.partition("=") for t in str(parsed["DKIM-Signature"]).split(";"))
    )
    return [h.strip() for h in re.sub(r"\s", "", tags["h"]).split(":")]


def assert_clean_bytes(data):
    """Every byte ASCII, every line within 998 octets, header lines within 78 but a
    one-word link's, and every part's transfer encoding 7bit-safe."""
    assert all(byte < 128 for byte in data)
    head, _, _body = data.partition(b"\r\n\r\n")
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    for line in head.split(b"\r\n"):
        if not line.startswith(b"List-Unsubscribe: <"):
            assert len(line) <= 78, line
    parsed = message_from_bytes(data, policy=policy.default)
    for part in parsed.walk():
        if not part.is_multipart():
            assert part["Content-Transfer-Encoding"] in ("7bit", "base64", "quoted-printable")


@pytest.fixture
def german_job(company, card):
    company.name = "Bücher & Söhne GmbH"
    company.language = "de"
    company.imprint = "Bücher & Söhne GmbH, Hauptstr. 1, 10115 Berlin\nHRB 12345, AG Charlottenburg"
    company.save()
    card.company = company
    return make_email_job(
        company,
        [f"{LONG_NAME} <long@example.org>", "plain@example.org"],
        card=card,
        # Trailing spaces and runs of spaces: relaxed canonicalization must agree.
        message="Guten Tag,   \nhier ist meine Karte.  \n\n  Grüße",
        subject="Unsere Visitenkarte – Bücher & Söhne",
    )


def test_messages_are_dkim_signed_and_dkimpy_verifies_them(
    german_job, email_kind, smtp_sink, dkim_key
):
    run_once(email_kind)

    german_job.refresh_from_db()
    assert german_job.status == Status.COMPLETED
    assert len(smtp_sink.messages) == 2
    for received in smtp_sink.messages:
        data = received.data
        assert dkim.verify(data, dnsfunc=dkim_key), data[:2000]
        headers = signed_headers(data)
        for name in (
            "from", "to", "subject", "date", "message-id", "reply-to", "mime-version",
            "content-type", "content-language", "list-unsubscribe", "list-unsubscribe-post",
            "feedback-id",
        ):  # fmt: skip
            assert name in headers
        assert_clean_bytes(data)
        # A changed link no longer verifies: the signature covers what matters.
        tampered = data.replace(b"List-Unsubscribe: <http://", b"List-Unsubscribe: <https://")
        assert tampered != data and not dkim.verify(tampered, dnsfunc=dkim_key)
    assert set(dkim_key.lookups) == {b"cards._domainkey.example.com."}


def test_the_long_umlaut_name_is_folded_and_reads_back(german_job, email_kind, smtp_sink):
    run_once(email_kind)

    long = next(m for m in smtp_sink.messages if m.rcpt_tos == ["long@example.org"])
    assert_clean_bytes(long.data)
    raw_to = re.search(rb"^To:(.*?\r\n(?:[ \t].*?\r\n)*)", long.data, re.M | re.S)[1]
    assert raw_to.count(b"\r\n") > 3  # folded over several lines
    # Whitespace between adjacent encoded words is not part of the text (RFC 2047 6.2), as
    # mail clients and the standard library's decode_header() read it.
    unfolded = raw_to.decode("ascii").replace("\r\n", "")
    assert getaddresses([str(make_header(decode_header(unfolded)))]) == [
        (LONG_NAME, "long@example.org")
    ]


def test_normally_built_messages_are_signed_too(german_job, dkim_key):
    """for_recipient(): the path taken when the cached bytes cannot be used."""
    item = german_job.items.select_related("card__company").first()
    data = CardEmail(german_job, item.card).for_recipient(item).message().as_bytes(linesep="\r\n")
    assert dkim.verify(data, dnsfunc=dkim_key)
    assert_clean_bytes(data)


def test_without_dkim_settings_nothing_is_signed(german_job, email_kind, smtp_sink):
    run_once(email_kind)
    assert all(b"DKIM-Signature" not in m.data for m in smtp_sink.messages)


def test_from_names_the_company_and_feedback_id_names_job_company_and_platform(
    german_job, email_kind, smtp_sink
):
    run_once(email_kind)

    message = smtp_sink.messages[0].message
    assert message["From"].addresses[0].display_name == "Bücher & Söhne GmbH via Business Cards"
    assert message["From"].addresses[0].addr_spec == "cards@example.com"
    assert message["Feedback-ID"] == f"{german_job.pk}:acme:card:example.com"
    assert message["Content-Language"] == "de"
    item = german_job.items.get(recipient_email=smtp_sink.messages[0].rcpt_tos[0])
    key = german_job.message_id_key
    assert re.fullmatch(r"[0-9a-f]{12}", key)
    assert message["Message-ID"] == f"<bulk-email.{german_job.pk}.{item.pk}.{key}@example.com>"
    # Another job has another key: two databases' job 1 item 1 no longer share an id.
    assert make_email_job(german_job.company, 1).message_id_key != key


def test_the_client_greets_with_email_helo_name(company, email_kind, smtp_sink, settings):
    settings.EMAIL_HELO_NAME = "mailer.cards-platform.de"
    make_email_job(company, 1)
    run_once(email_kind)
    assert smtp_sink.messages[0].helo == "mailer.cards-platform.de"


def test_a_host_without_a_qualified_name_never_greets_as_localhost(
    company, email_kind, smtp_sink, settings, monkeypatch
):
    settings.EMAIL_HELO_NAME = ""
    settings.DEFAULT_FROM_EMAIL = "Cards <cards@cards-platform.de>"
    monkeypatch.setattr(socket, "getfqdn", lambda *args: "localhost")
    monkeypatch.setattr(socket, "gethostname", lambda: "web1")
    make_email_job(company, 1)
    run_once(email_kind)
    assert smtp_sink.messages[0].helo == "cards-platform.de"


# System checks


def test_a_key_that_does_not_parse_is_an_error(tmp_path, settings):
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    settings.DKIM_DOMAIN, settings.DKIM_SELECTOR = "example.com", "cards"
    settings.DKIM_PRIVATE_KEY_FILE = str(bad)
    [error] = email_checks.check_dkim(None)
    assert error.id == "emails.E002" and "not an unencrypted PEM private key" in error.msg
    settings.DKIM_PRIVATE_KEY_FILE = str(tmp_path / "missing.pem")
    [error] = email_checks.check_dkim(None)
    assert "cannot be read" in error.msg
    settings.DKIM_SELECTOR = ""
    [error] = email_checks.check_dkim(None)
    assert error.msg.startswith("DKIM_SELECTOR not set")


@pytest.mark.parametrize(
    ("dkim_domain", "from_email", "ok"),
    [
        ("example.com", "cards@example.com", True),
        ("example.com", "cards@mail.example.com", True),
        ("mail.example.com", "cards@news.example.com", True),
        ("cards-platform.co.uk", "cards@cards-platform.co.uk", True),
        ("other.co.uk", "cards@cards-platform.co.uk", False),
        ("relay-provider.net", "cards@example.com", False),
    ],
)
def test_a_dkim_domain_must_align_with_the_from(tmp_path, settings, dkim_domain, from_email, ok):
    path, _record = make_key(tmp_path, bits=1024)
    settings.DKIM_DOMAIN, settings.DKIM_SELECTOR = dkim_domain, "cards"
    settings.DKIM_PRIVATE_KEY_FILE = str(path)
    settings.DEFAULT_FROM_EMAIL = f"Cards <{from_email}>"
    found = email_checks.check_dkim(None)
    assert [m.id for m in found] == ([] if ok else ["emails.E003"])


def test_the_signer_reads_a_rotated_key_again(tmp_path, settings):
    path, _record = make_key(tmp_path, bits=1024)
    settings.DKIM_DOMAIN, settings.DKIM_SELECTOR = "example.com", "cards"
    settings.DKIM_PRIVATE_KEY_FILE = str(path)
    first = signing.signer()
    assert signing.signer() is first
    path.unlink()
    with pytest.raises(ImproperlyConfigured, match="cannot be read"):
        signing.signer()
