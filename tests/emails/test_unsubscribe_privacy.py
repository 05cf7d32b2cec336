"""Unsubscribe links keep the address private: the token is encrypted (nothing readable
without the key, tampering refused), links sent before still work, the key can rotate
through SECRET_KEY_FALLBACKS; no token or address reaches the log, a mangled link's
included; and one-click POSTs are limited per client address."""

import base64
import logging
import zlib

import pytest
from django.core import signing
from django.test import Client

from emails.models import EmailSuppression
from emails.unsubscribe import make_token, read_token, unsubscribe_url

pytestmark = pytest.mark.django_db

ADDRESS = "jane.doe@example.org"


def every_decoding(token):
    """What anyone could read from the token without the key: base64 (with and without
    its first characters), and zlib of that."""
    texts = []
    for start in range(4):
        raw = token[start:]
        try:
            data = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        except ValueError:
            continue
        texts.append(data)
        try:
            texts.append(zlib.decompress(data))
        except zlib.error:
            pass
    return b" ".join(texts)


def test_the_token_does_not_carry_the_address_readable(company):
    token = make_token(company.pk, ADDRESS)

    assert token.startswith("u2")
    decoded = every_decoding(token)
    assert b"jane" not in decoded and b"example" not in decoded
    assert "jane" not in token
    assert read_token(token) == (company.pk, ADDRESS)
    # Every length of address (base64 padding differs) reads back.
    for n in range(1, 9):
        assert (
            read_token(make_token(company.pk, "a" * n + "@example.org"))[1]
            == "a" * n + "@example.org"
        )
    # Stable per company and address; another address or company gets an unrelated one.
    assert make_token(company.pk, ADDRESS) == token
    assert make_token(company.pk, "jane.dof@example.org")[:20] != token[:20]
    assert make_token(company.pk + 1, ADDRESS)[:20] != token[:20]
    assert len(unsubscribe_url(company.pk, ADDRESS)) < 200


def test_a_tampered_or_foreign_token_is_refused(company, settings):
    token = make_token(company.pk, ADDRESS)
    flipped = token[:10] + ("A" if token[10] != "A" else "B") + token[11:]
    for bad in (flipped, token[:-2], "u2", "u2!!!", "u2" + "A" * 80):
        with pytest.raises(signing.BadSignature):
            read_token(bad)
    settings.SECRET_KEY = "another-secret-key-" + "x" * 40
    with pytest.raises(signing.BadSignature):
        read_token(token)


def test_links_survive_a_key_rotation_through_the_fallbacks(company, settings):
    token = make_token(company.pk, ADDRESS)
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "the-new-secret-key-" + "y" * 40

    assert read_token(token) == (company.pk, ADDRESS)


def test_links_in_emails_sent_before_keep_working(company):
    """Signed as the previous release signed them (the address readable): still accepted."""
    old = signing.dumps({"c": company.pk, "e": ADDRESS}, salt="emails.unsubscribe", compress=True)

    response = Client().post(f"/emails/unsubscribe/{old}/", {"List-Unsubscribe": "One-Click"})

    assert response.status_code == 200
    assert EmailSuppression.objects.filter(company=company, email=ADDRESS).exists()


def test_no_token_or_address_is_logged_for_a_mangled_link(company, caplog):
    """A mail client cutting or re-encoding the link: 404, and nothing of it in the log."""
    old = signing.dumps({"c": company.pk, "e": ADDRESS}, salt="emails.unsubscribe", compress=True)
    new = make_token(company.pk, ADDRESS)
    client = Client()
    with caplog.at_level(logging.DEBUG):
        for mangled in (old[:-3], new[:-3], old + "%3E", new.upper()):
            assert client.get(f"/emails/unsubscribe/{mangled}/").status_code == 404
            assert client.post(f"/emails/unsubscribe/{mangled}/").status_code == 404
    logged = caplog.text + " ".join(r.getMessage() for r in caplog.records)
    assert old[:20] not in logged and new[:20] not in logged
    assert "jane" not in logged


def test_the_log_filter_cuts_tokens_out_of_any_logged_path(company):
    from bulkjobs.ops.logredact import RedactEmailAddresses

    token = make_token(company.pk, ADDRESS)
    record = logging.LogRecord(
        "django.request",
        logging.WARNING,
        __file__,
        1,
        "Not Found: %s",
        (f"/emails/unsubscribe/{token}/",),
        None,
    )
    RedactEmailAddresses().filter(record)
    assert record.getMessage() == "Not Found: /emails/unsubscribe/…/"


def test_one_click_posts_are_limited_per_address(company, settings):
    settings.UNSUBSCRIBE_RATE_LIMIT = "3/min"
    client = Client()

    def post(n, address):
        url = unsubscribe_url(company.pk, f"person{n}@example.org").split("testserver", 1)[-1]
        url = url[url.index("/emails/") :]
        return client.post(url, {"List-Unsubscribe": "One-Click"}, REMOTE_ADDR=address)

    answers = [post(n, "192.0.2.10").status_code for n in range(5)]
    assert answers == [200, 200, 200, 429, 429]
    assert EmailSuppression.objects.count() == 3
    # Another client, and the confirmation page (a GET), are not affected.
    assert post(9, "192.0.2.11").status_code == 200
    url = unsubscribe_url(company.pk, ADDRESS)
    assert client.get(url[url.index("/emails/") :], REMOTE_ADDR="192.0.2.10").status_code == 200
