"""The vCard read back by a small RFC 6350 parser: hostile field values cannot inject
properties, every physical line is at most 75 octets, and every value round-trips; for the
download and the email attachment alike."""

import re
from email import message_from_bytes, policy

import pytest

from cards.vcard import build_vcard
from emails.message import CardEmail
from tests.conftest import make_email_job

pytestmark = pytest.mark.django_db

_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


def unescape(value):
    return _ESCAPE.sub(lambda m: "\n" if m.group(1) in "nN" else m.group(1), value)


def split_unescaped(value, separator):
    """Split a structured value (N, ADR) at separators that are not escaped."""
    return re.split(rf"(?<!\\){re.escape(separator)}", value)


def parse_vcard(text):
    """Return ([(name, params, raw value)], physical lines), checking the folding rules."""
    assert text.endswith("\r\n")
    physical = text[:-2].split("\r\n")
    for line in physical:
        assert len(line.encode()) <= 75, line
        assert "\r" not in line and "\n" not in line
    unfolded = text.replace("\r\n ", "").replace("\r\n\t", "")
    properties = []
    for line in unfolded[:-2].split("\r\n"):
        head, _, value = line.partition(":")
        name, *params = head.split(";")
        properties.append((name.upper(), params, value))
    return properties, physical


def by_name(properties):
    found = {}
    for name, _params, value in properties:
        found.setdefault(name, []).append(value)
    return found


@pytest.fixture
def hostile_card(card):
    card.full_name = "Eve\rEMAIL:evil@attacker.example Zoë-Ångström"
    card.job_title = "Head\r\nTEL:+1 555 0100\nof R&D, Research; Development \\ Ops " + "😀" * 30
    card.company.name = "Bücher & Söhne, Straße; " + "ü" * 60
    card.address = "1 Analytical Way\rLondon\r\nUK\nEarth"
    card.phone = "+44 20 7946 0001\x0bX-EVIL:1"
    card.website = "https://example.com/ada\r\nX-EVIL:1"
    return card


def check_hostile_vcard(text, card):
    properties, physical = parse_vcard(text)
    names = [name for name, _params, _value in properties]
    assert names == [
        "BEGIN",
        "VERSION",
        "N",
        "FN",
        "ORG",
        "TITLE",
        "EMAIL",
        "TEL",
        "TEL",
        "URL",
        "ADR",
        "SOURCE",
        "END",
    ]
    # Folding happened (the values are long), and never inside a multi-byte character.
    assert any(line.startswith(" ") for line in physical)
    values = by_name(properties)
    assert values["EMAIL"] == ["ada@example.com"]
    assert unescape(values["FN"][0]) == "Eve\nEMAIL:evil@attacker.example Zoë-Ångström"
    assert unescape(values["TITLE"][0]) == card.job_title.replace("\r\n", "\n")
    assert unescape(values["ORG"][0]) == card.company.name
    assert split_unescaped(values["ADR"][0], ";")[2] == "1 Analytical Way\\nLondon\\nUK\\nEarth"
    assert unescape(values["TEL"][0]) == "+44 20 7946 0001X-EVIL:1"
    assert values["URL"] == ["https://example.com/ada" + "X-EVIL:1"]
    family, given, *_rest = split_unescaped(values["N"][0], ";")
    assert unescape(family) == "Zoë-Ångström"
    assert unescape(given) == "Eve\nEMAIL:evil@attacker.example"


def test_a_hostile_card_round_trips_without_injected_properties(hostile_card):
    check_hostile_vcard(build_vcard(hostile_card), hostile_card)


def test_the_download_is_the_same_safe_vcard(client, hostile_card):
    hostile_card.save()
    hostile_card.company.save()
    response = client.get(f"/c/{hostile_card.public_id}/vcard.vcf")
    assert response.status_code == 200
    check_hostile_vcard(response.content.decode(), hostile_card)


def test_the_email_attachment_is_the_same_safe_vcard(hostile_card):
    hostile_card.save()
    hostile_card.company.save()
    job = make_email_job(hostile_card.company, ["jane@example.org"], card=hostile_card)
    item = job.items.select_related("card__company").get()
    card_email = CardEmail(job, item.card)
    for built in (card_email.prebuilt_for(item), card_email.for_recipient(item)):
        raw = built.message().as_bytes(linesep="\r\n")
        [attachment] = message_from_bytes(raw, policy=policy.default).iter_attachments()
        text = attachment.get_content().replace("\r\n", "\n").replace("\n", "\r\n")
        check_hostile_vcard(text, item.card)


@pytest.mark.parametrize("width", range(70, 80))
def test_folding_never_splits_a_character_or_an_escape(card, width):
    card.full_name = "x" * width + "é😀\\,;" * 20
    _properties, physical = parse_vcard(build_vcard(card))
    for line in physical:
        line.encode().decode()  # each physical line is whole UTF-8 on its own
        assert not re.search(r"(?<!\\)(\\\\)*\\$", line), line  # no dangling backslash
