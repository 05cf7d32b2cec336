"""The recipient parser on lists as people have them and as attackers write them: each
kind of bad line named, spreadsheet headers in English and German, sniffed separators,
Excel's encodings, international domains converted exactly as the IDNA codec does, and
the caps (bad lines listed, lines, recipients). Pure parsing: no database."""

import codecs
import random

import pytest
from django.core.exceptions import ValidationError
from django.utils.encoding import punycode

from emails.recipients import (
    MAX_BAD_LINES_LISTED,
    RecipientListError,
    _ascii_domain,
    decode_upload,
    max_lines,
    parse_recipients,
)


def problems(text):
    with pytest.raises(RecipientListError) as caught:
        parse_recipients(text)
    return [(bad.line_number, bad.problem) for bad in caught.value.bad_lines]


def pairs(text, **kwargs):
    recipients, _duplicates = parse_recipients(text, **kwargs)
    return [(r.email, r.name) for r in recipients]


@pytest.mark.parametrize(
    ("line", "start"),
    [
        ("hans@@firma.de", "two @ signs"),
        ("hans@firma.deerika@firma.de", "two addresses without a separator"),
        ("hans@", "no domain after the @"),
        ("@firma.de", "nothing before the @"),
        ("Hans Müller", "a name without an email address"),
        ("Erika <erika@firma", "an unclosed bracket"),
        ("<erika@firma.de", "an unclosed bracket"),
        ("erika@localhost", "Enter a valid email address"),
    ],
)
def test_each_kind_of_bad_line_is_named(line, start):
    [(number, problem)] = problems(f"ok@example.com\n{line}")
    assert number == 2
    assert problem.startswith(start), problem


def test_every_bad_line_is_reported_at_once_in_german(settings):
    from django.utils import translation

    with translation.override("de"):
        found = problems("hans@@firma.de\nHans Müller\n<erika@firma\nok@example.com")
    assert [number for number, _problem in found] == [1, 2, 3]
    assert "zwei @" in found[0][1].lower()
    assert "Name ohne E-Mail-Adresse" in found[1][1]
    assert "Klammer" in found[2][1]


def test_only_the_first_bad_lines_are_kept_and_all_are_counted():
    with pytest.raises(RecipientListError) as caught:
        parse_recipients("x\n" * 5000)
    assert len(caught.value.bad_lines) == MAX_BAD_LINES_LISTED
    assert caught.value.count == 5000
    assert caught.value.messages[-1] == "…and 4,900 more lines with problems."


GERMAN_EXCEL = "E-Mail;Name\nhans@firma.de;Müller, Hans\nerika@firma.de;Erika Mustermann\n"


@pytest.mark.parametrize(
    "text",
    [
        GERMAN_EXCEL,
        "Name;E-Mail-Adresse\nMüller, Hans;hans@firma.de\nErika Mustermann;erika@firma.de\n",
        "Mail\tName\nhans@firma.de\tMüller, Hans\nerika@firma.de\tErika Mustermann\n",
        'Name,Email\n"Müller, Hans",hans@firma.de\nErika Mustermann,erika@firma.de\n',
        "Nachname;Vorname;Firma;E-Mail\nMüller, Hans;;ACME;hans@firma.de\n"
        "Mustermann;Erika;ACME;erika@firma.de\n",
    ],
    ids=["e-mail;name", "name;e-mail-adresse", "mail-tab-name", "name,email", "vorname-nachname"],
)
def test_header_rows_in_english_and_german_in_any_column_order(text):
    found = pairs(text)
    assert found[0] == ("hans@firma.de", "Müller, Hans")
    assert found[1][0] == "erika@firma.de"
    assert found[1][1] in ("Erika Mustermann", "Erika Mustermann")


def test_a_postal_address_column_is_not_taken_for_the_email():
    text = "Name;Adresse;E-Mail\nHans;Hauptstr. 1, Berlin;hans@firma.de\n"
    assert pairs(text) == [("hans@firma.de", "Hans")]


def test_first_and_last_names_are_joined_and_empty_rows_skipped():
    text = "Vorname,Nachname,Email\nErika,Mustermann,erika@firma.de\n,,\n;;\nHans,,hans@firma.de\n"
    assert pairs(text) == [("erika@firma.de", "Erika Mustermann"), ("hans@firma.de", "Hans")]


def test_a_cell_under_a_header_may_hold_two_addresses():
    # The cell's own separators (comma, semicolon) split it, as on a line of their own.
    text = 'Name;E-Mail\nJane;"a@x.de, b@y.de"\nHans;hans@firma.de\n'
    assert pairs(text) == [("a@x.de", ""), ("b@y.de", ""), ("hans@firma.de", "Hans")]


def test_a_row_without_an_address_under_a_header_is_a_name_without_an_address():
    assert problems("E-Mail;Name\nhans@firma.de;Hans\n;Erika\n") == [
        (3, "a name without an email address; add it (like Jane Doe <jane@example.com>)")
    ]


@pytest.mark.parametrize(
    "encode",
    [
        lambda text: codecs.BOM_UTF8 + text.encode("utf-8"),
        lambda text: text.encode("utf-16"),
        lambda text: text.replace("\n", "\r\n").encode("cp1252"),
    ],
    ids=["utf-8-bom", "utf-16-bom", "windows-1252-crlf"],
)
def test_excel_encodings_with_a_german_header(encode):
    assert pairs(decode_upload(encode(GERMAN_EXCEL))) == [
        ("hans@firma.de", "Müller, Hans"),
        ("erika@firma.de", "Erika Mustermann"),
    ]


def test_international_domains_match_the_idna_codec():
    words = [
        "bücher",
        "straße",
        "ελληνικά",
        "ς",
        "한국",
        "中文网",
        "пример",
        "ﬁrma",
        "עברית",
        "ab\u0301c",
        "\u1100\u1161",
        "İstanbul",
        "①",
        "xn--ä",
        "ä" * 64,
    ]
    rng = random.Random(7)
    for _ in range(4000):
        words.append(
            "".join(
                chr(
                    rng.choice(
                        [
                            rng.randint(0xA0, 0x52F),
                            rng.randint(0x1E00, 0x1FFF),
                            rng.randint(0xFF01, 0xFF5E),
                            rng.randint(0xAC00, 0xAD00),
                        ]
                    )
                )
                for _ in range(rng.randint(1, 8))
            )
        )
    for word in words:
        domain = f"{word}.example"
        try:
            expected = punycode(domain)
        except UnicodeError:
            expected = None
        assert _ascii_domain(domain) == expected, domain


def test_a_long_international_label_is_refused_without_encoding_it():
    [(number, problem)] = problems("a@" + "ä" * 900 + ".de")
    assert number == 1
    assert problem.startswith("Enter a valid email address")


def test_more_lines_than_allowed_are_refused_before_reading():
    with pytest.raises(ValidationError) as caught:
        parse_recipients("x\n" * max_lines(10), max_recipients=10)
    assert "more than 20 lines" in caught.value.messages[0]
    assert not isinstance(caught.value, RecipientListError)


def test_more_recipients_than_allowed_are_refused():
    text = "\n".join(f"r{i}@example.com" for i in range(11))
    with pytest.raises(ValidationError, match="more than 10 recipients"):
        parse_recipients(text, max_recipients=10)
    assert len(pairs(text, max_recipients=11)) == 11


def test_max_recipients_defaults_to_100000(settings):
    # tests/settings.py takes config/settings.py's default, read from the environment
    # (BULKJOBS_EMAIL_MAX_RECIPIENTS), which the test run does not set.
    assert settings.EMAIL_MAX_RECIPIENTS == 100_000
