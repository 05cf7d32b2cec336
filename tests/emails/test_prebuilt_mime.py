"""The prebuilt card email is valid MIME whatever the content: every body line within RFC
2045's 76 characters, the real unsubscribe link in both bodies, and a fallback to building
the message normally when a placeholder cannot be substituted safely."""

import logging
import re
from email import message_from_bytes, policy

import pytest
import time_machine

from emails.message import CardEmail
from emails.unsubscribe import unsubscribe_url
from tests.conftest import make_email_job

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def frozen_clock():
    """Unsubscribe tokens carry a time stamp: the URL a test makes to compare must be the
    one the message got, even across a second's boundary."""
    with time_machine.travel("2026-11-28 09:00:00 +0000", tick=False):
        yield


LONG_MESSAGE = ("Schön, Sie kennengelernt zu haben – à bientôt! " * 22).strip()  # ~1,000 chars


def raw_and_parsed(email):
    raw = email.message().as_bytes(linesep="\r\n")
    return raw, message_from_bytes(raw, policy=policy.default)


def check_line_lengths(raw, link):
    head, _, body = raw.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        # List-Unsubscribe's URL cannot be folded without putting whitespace inside it;
        # RFC 5322 allows 998 octets, 78 is a SHOULD.
        assert len(line) <= (998 if link.encode() in line else 78), line
    for line in body.split(b"\r\n"):
        assert len(line) <= 76, line


@pytest.fixture
def long_job(company, card):
    company.name = "Bücher & Söhne Großhandel"
    company.save()
    card.company = company
    return make_email_job(
        company,
        ["Zoë Ü <zoe@example.org>", "plain.person@example.net"],
        card=card,
        message=LONG_MESSAGE,
        subject="Unsere Visitenkarte – Bücher & Söhne",
    )


def test_a_long_message_and_a_non_ascii_company_make_valid_mime(long_job):
    items = list(long_job.items.select_related("card__company").order_by("id"))
    card_email = CardEmail(long_job, items[0].card)
    for item in items:
        raw, parsed = raw_and_parsed(card_email.prebuilt_for(item))
        link = unsubscribe_url(long_job.company_id, item.recipient_email)
        check_line_lengths(raw, link)
        assert len(link) > 76  # the link alone would make a too-long line unencoded
        text = parsed.get_body(preferencelist=("plain",)).get_content()
        html = parsed.get_body(preferencelist=("html",)).get_content()
        assert f"Unsubscribe: {link}\n" in text.replace("\r\n", "\n")
        assert re.findall(r'<a href="([^"]*)">Unsubscribe</a>', html) == [link]
        assert "__UNSUBSCRIBE_URL__" not in text + html
        assert LONG_MESSAGE in text and "Bücher &amp; Söhne Großhandel" in html
        assert str(parsed["List-Unsubscribe"]) == f"<{link}>"
        for part in parsed.walk():
            if part.get_content_type() in ("text/plain", "text/html"):
                assert part["Content-Transfer-Encoding"] == "quoted-printable"


def test_the_normally_built_message_is_valid_mime_too(long_job):
    item = long_job.items.select_related("card__company").first()
    raw, _parsed = raw_and_parsed(CardEmail(long_job, item.card).for_recipient(item))
    check_line_lengths(raw, unsubscribe_url(long_job.company_id, item.recipient_email))


def test_prebuilt_and_normally_built_bodies_are_the_same_bytes(long_job):
    item = long_job.items.select_related("card__company").first()
    card_email = CardEmail(long_job, item.card)
    fast, _ = raw_and_parsed(card_email.prebuilt_for(item))
    slow, _ = raw_and_parsed(card_email.for_recipient(item))
    boundary = re.compile(rb"===============\d+==")
    # From the first part on; the top-level headers are compared in test_smtp_delivery.
    fast_parts = boundary.sub(b"B", fast).partition(b"\r\n--B\r\n")[2]
    slow_parts = boundary.sub(b"B", slow).partition(b"\r\n--B\r\n")[2]
    assert fast_parts and fast_parts == slow_parts


def test_a_placeholder_found_twice_falls_back_to_building_normally(company, card, caplog):
    # A subject quoting a placeholder: substituting the cached headers would change it.
    subject = "Write to __UNSUBSCRIBE_URL__"
    job = make_email_job(
        company, ["ann@example.org", "bob@example.org"], card=card, subject=subject
    )
    items = list(job.items.select_related("card__company").order_by("id"))
    card_email = CardEmail(job, items[0].card)
    with caplog.at_level(logging.DEBUG, logger="emails.message"):
        sent = [raw_and_parsed(card_email.prebuilt_for(item))[1] for item in items]
    assert [m["Subject"] for m in sent] == [subject, subject]
    assert [m["To"] for m in sent] == ["ann@example.org", "bob@example.org"]
    assert [r.getMessage() for r in caplog.records if r.name == "emails.message"] == [
        f"Job {job.pk}, card {card.pk}: messages built one by one"
    ]
