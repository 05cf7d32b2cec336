"""Careless and hostile recipient lists: several addresses per line, RFC 5321 lengths, control
characters, international domains and local parts, file encodings, subjects with line breaks.

Each list goes through the service that creates jobs, so the database (SQLite, PostgreSQL,
MariaDB) sees exactly what would be stored: these inputs used to be 500s on PostgreSQL.
"""

import codecs

import pytest
from django.core.exceptions import ValidationError

from emails.models import BulkEmailJob, BulkEmailJobItem
from emails.recipients import RecipientListError, decode_upload, parse_recipients
from emails.services import create_email_job
from tests.conftest import make_cards

pytestmark = pytest.mark.django_db


@pytest.fixture
def holder_card(company):
    return make_cards(company, 1)[0]


def create(company, card, text, subject="Hello"):
    return create_email_job(company=company, cards=[card], subject=subject, recipients_text=text)


def stored(job):
    return list(job.items.order_by("id").values_list("recipient_email", "recipient_name"))


def bad_lines(company, card, text):
    with pytest.raises(RecipientListError) as caught:
        create(company, card, text)
    assert not BulkEmailJob.objects.exists() and not BulkEmailJobItem.objects.exists()
    return [(bad.line_number, bad.problem) for bad in caught.value.bad_lines]


@pytest.mark.parametrize("separator", [",", ", ", ";", "; ", "\t"])
def test_several_addresses_on_one_line_are_all_kept(company, holder_card, separator):
    text = f"ann@example.com{separator}bob@example.org{separator}Cy Dee <cy@example.net>\n"
    job = create(company, holder_card, text + "dan@example.com")
    assert stored(job) == [
        ("ann@example.com", ""),
        ("bob@example.org", ""),
        ("cy@example.net", "Cy Dee"),
        ("dan@example.com", ""),
    ]


def test_csv_rows_keep_their_names_whatever_the_delimiter(company, holder_card):
    text = (
        "email;name\n"
        "ann@example.com;Ann Bee\n"
        "Bob Roe,bob@example.org\n"
        '"Dee, Cy",cy@example.net\n'
        '"Doe, Jane" <jane@example.com>\n'
    )
    assert stored(create(company, holder_card, text)) == [
        ("ann@example.com", "Ann Bee"),
        ("bob@example.org", "Bob Roe"),
        ("cy@example.net", "Dee, Cy"),
        ("jane@example.com", "Doe, Jane"),
    ]


def test_several_addresses_with_names_on_one_line_are_an_error_not_a_guess(company, holder_card):
    problems = bad_lines(
        company, holder_card, "ok@example.com\nann@example.com,Ann,bob@example.org"
    )
    assert problems == [
        (2, "several addresses and names on one line; put each recipient on a line of its own")
    ]


def test_rfc_5321_lengths_are_line_numbered_errors(company, holder_card):
    local_64 = "a" * 64
    long_domain = ".".join(["d" * 50] * 5) + ".com"  # labels within 63, the address 260
    text = "\n".join(
        [
            f"{local_64}@example.com",
            f"{'b' * 300}@example.com",
            f"{'c' * 65}@example.com",
            f"x@{long_domain}",
        ]
    )
    problems = bad_lines(company, holder_card, text)
    assert problems == [
        (2, "the part before @ is longer than 64 characters"),
        (3, "the part before @ is longer than 64 characters"),
        (4, "the address is longer than 254 characters"),
    ]
    # The longest legal local part is stored as it is.
    job = create(company, holder_card, f"{local_64}@example.com")
    assert stored(job) == [(f"{local_64}@example.com", "")]


def test_a_128_kib_line_is_a_clear_error_quoting_only_its_start(company, holder_card):
    with pytest.raises(RecipientListError) as caught:
        create(company, holder_card, "ok@example.com\n" + "x" * 128 * 1024)
    [bad] = caught.value.bad_lines
    assert (bad.line_number, bad.problem) == (
        2,
        "the line is longer than 1,000 characters; put each recipient on a line of its own",
    )
    assert len(bad.text) <= 101


@pytest.mark.parametrize("character", ["\x00", "\x1b", "\x7f"])
def test_control_characters_are_line_numbered_errors(company, holder_card, character):
    problems = bad_lines(company, holder_card, f"ok@example.com\nann{character}@example.com")
    assert problems == [
        (2, f"the line contains a control character (U+{ord(character):04X}); remove it")
    ]


def test_an_international_domain_is_stored_in_its_ascii_form(company, holder_card):
    job = create(company, holder_card, "Zoë <user@bücher.example>\nUSER@BÜCHER.example")
    # The second line is the same mailbox, so it is dropped as a duplicate.
    assert stored(job) == [("user@xn--bcher-kva.example", "Zoë")]
    [recipient], _duplicates = parse_recipients("user@bücher.example")
    assert recipient.typed_email == "user@bücher.example"


def test_holder_addresses_with_an_international_domain_are_stored_in_ascii(company):
    card = make_cards(company, 1)[0]
    card.email = "ada@müller.example"
    card.save()
    job = create_email_job(company=company, cards=[card], subject="Hi")
    assert stored(job) == [("ada@xn--mller-kva.example", card.full_name)]


def test_a_non_ascii_local_part_is_refused_saying_why(company, holder_card):
    problems = bad_lines(company, holder_card, "ok@example.com\nzoë@example.com")
    assert problems == [
        (
            2,
            "the part before @ has non-ASCII characters; such addresses (SMTPUTF8) cannot be "
            "sent to, ask the recipient for another address",
        )
    ]


@pytest.mark.parametrize(
    "subject", ["Hello\r\nBcc: victim@example.com", "Hello\nworld", "Hello\rworld", "Hi\x00"]
)
def test_the_service_refuses_a_subject_with_control_characters(company, holder_card, subject):
    with pytest.raises(ValidationError, match="without line breaks"):
        create(company, holder_card, "ann@example.com", subject=subject)
    assert not BulkEmailJob.objects.exists()


def test_the_service_refuses_a_message_with_nul(company, holder_card):
    with pytest.raises(ValidationError, match="NUL"):
        create_email_job(
            company=company,
            cards=[holder_card],
            subject="Hi",
            message="Dear\x00friend",
            recipients_text="ann@example.com",
        )
    assert not BulkEmailJob.objects.exists()


CSV_TEXT = "email,name\nzoe@example.com,Zoë Müller\nann@example.com,Ann\n"


@pytest.mark.parametrize(
    "data",
    [
        CSV_TEXT.encode("utf-8"),
        codecs.BOM_UTF8 + CSV_TEXT.encode("utf-8"),
        CSV_TEXT.encode("utf-16"),  # with its BOM, as Excel's "Unicode text" writes
        codecs.BOM_UTF16_BE + CSV_TEXT.encode("utf-16-be"),
        CSV_TEXT.replace(",", ";").encode("cp1252"),  # German Excel's "CSV"
    ],
    ids=["utf-8", "utf-8-bom", "utf-16-le-bom", "utf-16-be-bom", "windows-1252"],
)
def test_uploads_in_spreadsheet_encodings_are_decoded(company, holder_card, data):
    job = create(company, holder_card, decode_upload(data))
    assert stored(job) == [("zoe@example.com", "Zoë Müller"), ("ann@example.com", "Ann")]


@pytest.mark.parametrize(
    "data",
    [
        CSV_TEXT.encode("utf-16-le"),  # UTF-16 without a BOM: NUL bytes everywhere
        b"PK\x03\x04\x14\x00\x06\x00",  # an Excel workbook (xlsx) instead of CSV
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",  # an old Excel workbook (xls)
        b"ann@example.com,\x81\x8d",  # bytes that are neither UTF-8 nor Windows-1252
    ],
    ids=["utf-16-no-bom", "xlsx", "xls", "undecodable"],
)
def test_unreadable_uploads_are_refused_saying_how_to_save_them(data):
    with pytest.raises(ValidationError) as caught:
        decode_upload(data)
    assert 'Save it as "CSV UTF-8 (comma delimited)"' in caught.value.messages[0]
