"""VERP envelope senders: each email's bounces come back to an address naming its item.

With BOUNCE_ADDRESS set (bounces@bounce.example.com) the SMTP envelope sender (MAIL
FROM, which becomes the Return-Path, where every bounce goes) of an item's email is
`bounces+<token>@bounce.example.com`. The token is the item's id in base 36, a dash and
an HMAC of it keyed with SECRET_KEY (ten base-32 characters, 50 bits): short enough for
any mail system's local part, lower case because some lower-case it, and impossible to
make for an item without the key, so a forged bounce cannot touch someone's item or
suppression list. emails/bounces.py reads the token back (item_for_token()), comparing
the signature in constant time.
"""

import base64
import re

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.crypto import constant_time_compare, salted_hmac

_SALT = "emails.verp"
_SIGNATURE_LENGTH = 10
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def bounce_address():
    """(local part, domain) of settings.BOUNCE_ADDRESS, or None when it is not set."""
    address = (getattr(settings, "BOUNCE_ADDRESS", "") or "").strip()
    if not address:
        return None
    local, _, domain = address.rpartition("@")
    if not local or not domain or "+" in local or not address.isascii() or " " in address:
        raise ImproperlyConfigured(
            f"BOUNCE_ADDRESS must be a plain ASCII address without '+' (like "
            f"bounces@bounce.example.com), got {address!r}."
        )
    return local, domain.lower()


def _base36(number):
    text = ""
    while True:
        number, digit = divmod(number, 36)
        text = _DIGITS[digit] + text
        if not number:
            return text


def _signature(item_id_text):
    digest = salted_hmac(_SALT, item_id_text, algorithm="sha256").digest()
    return base64.b32encode(digest).decode()[:_SIGNATURE_LENGTH].lower()


def token_for(item_pk):
    """The signed token naming the item: "<id in base 36>-<signature>"."""
    item_id = _base36(item_pk)
    return f"{item_id}-{_signature(item_id)}"


def envelope_sender(item_pk, address=None):
    """The item's VERP envelope sender, or None when BOUNCE_ADDRESS is not set.
    `address`: bounce_address(), when the caller has it already (once per batch)."""
    address = address or bounce_address()
    if address is None:
        return None
    local, domain = address
    return f"{local}+{token_for(item_pk)}@{domain}"


def item_pk_for_token(token):
    """The item id a token names, or None when its signature is not ours (compared in
    constant time) or it is malformed."""
    item_id, dash, signature = token.lower().partition("-")
    if not dash or not item_id or len(item_id) > 13:
        return None
    if not (item_id.isascii() and item_id.isalnum()):
        return None
    if not constant_time_compare(signature, _signature(item_id)):
        return None
    pk = int(item_id, 36)
    return pk if 0 < pk < 2**63 else None


def token_pattern(address=None):
    """A regex finding `local+<token>@domain` in text (group 1: the token), or None."""
    address = address or bounce_address()
    if address is None:
        return None
    local, domain = address
    return re.compile(
        rf"(?<![\w.+-]){re.escape(local)}\+([0-9a-z]{{1,13}}-[0-9a-z]{{1,32}})@{re.escape(domain)}\b",
        re.IGNORECASE,
    )
