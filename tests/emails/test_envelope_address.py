"""The envelope's addresses in angle brackets, without smtplib's RFC 5322 parser for
plain addresses: the same text as smtplib.quoteaddr() for every kind of address."""

import smtplib

import pytest

from emails.smtp import angle_address

ADDRESSES = [
    "kunde@firma.de",
    "first.last+tag@sub.example.com",
    "bounce+3f9a0c1d2e@bounces.example.com",
    "o'brien@example.ie",
    "x@xn--mller-kva.de",
    "UPPER@Example.COM",
    # Not plain: a display name, quoting, a comment, a route, angle brackets, nothing.
    "Jane Doe <jane@example.com>",
    '"jane doe"@example.com',
    "jane@example.com (Jane)",
    "<jane@example.com>",
    "<>",
    "",
    "no-at-sign",
    "a@b@c",
    "jane@[192.0.2.1]",
    " spaced@example.com ",
]


@pytest.mark.parametrize("address", ADDRESSES)
def test_same_as_smtplib(address):
    assert angle_address(address) == smtplib.quoteaddr(address)
