"""Opaque one-click unsubscribe tokens (RFC 8058) and the suppression list they feed.

A token is the company id and the address encrypted and authenticated with AES-GCM
under a key derived from SECRET_KEY (HKDF): nobody without the key can read the address
from a link (a forwarded email, a proxy's log) or make a token for another address. No
row is written per email: sending stays two small UPDATEs per item. Rotating SECRET_KEY
with the old key in SECRET_KEY_FALLBACKS keeps the links already sent working.

Links sent before this (signed with django.core.signing: base64 of the address, readable
without the key) keep working: they are recognised by their form and still accepted,
since the emails carrying them cannot be recalled. They are never issued again.
"""

import base64
import functools
import hashlib
import hmac
import json

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core import signing
from django.db.models import Q
from django.urls import reverse

from .models import EmailSuppression

_SALT = "emails.unsubscribe"
#: What starts an encrypted token; a signed (legacy) one never does ("." or "ey").
_PREFIX = "u2"
_AAD = b"emails.unsubscribe.v2"


@functools.lru_cache(maxsize=8)
def _keys(secret):
    """(cipher, nonce key) derived from one secret key."""
    material = HKDF(algorithm=hashes.SHA256(), length=64, salt=_SALT.encode(), info=_AAD).derive(
        secret.encode() if isinstance(secret, str) else secret
    )
    return AESGCM(material[:32]), material[32:]


def _cipher(secret):
    return _keys(secret)[0]


def _ciphers():
    """The current key's cipher first, then those of SECRET_KEY_FALLBACKS."""
    return [_cipher(settings.SECRET_KEY)] + [
        _cipher(old) for old in getattr(settings, "SECRET_KEY_FALLBACKS", [])
    ]


def make_token(company_id, email):
    plain = json.dumps({"c": company_id, "e": email.lower()}, separators=(",", ":")).encode()
    cipher, nonce_key = _keys(settings.SECRET_KEY)
    # The nonce is a MAC of the content (synthetic IV): one address of one company always
    # gets the same link (the header's and the body's agree, and an email built twice is
    # the same), and a nonce repeats only with its content, so nothing leaks but that.
    nonce = hmac.new(nonce_key, plain, hashlib.sha256).digest()[:12]
    sealed = nonce + cipher.encrypt(nonce, plain, _AAD)
    return _PREFIX + base64.urlsafe_b64encode(sealed).rstrip(b"=").decode()


def _open(token):
    """The decrypted content of an encrypted token; BadSignature if no key opens it."""
    raw = token[len(_PREFIX) :]
    try:
        sealed = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except ValueError as exc:
        raise signing.BadSignature("not an unsubscribe token") from exc
    if len(sealed) < 12 + 16:
        raise signing.BadSignature("not an unsubscribe token")
    for cipher in _ciphers():
        try:
            plain = cipher.decrypt(sealed[:12], sealed[12:], _AAD)
        except InvalidTag:
            continue
        try:
            return json.loads(plain)
        except ValueError as exc:
            raise MalformedToken("the token is not JSON") from exc
    raise signing.BadSignature("no key opens this unsubscribe token")


class MalformedToken(signing.BadSignature):
    """Correctly signed, but not the structure make_token() signs (an old or foreign token)."""


def read_token(token):
    """Return (company_id, email) or raise signing.BadSignature (MalformedToken included)."""
    if token.startswith(_PREFIX):
        data = _open(token)
    else:
        data = signing.loads(token, salt=_SALT)  # a link sent before tokens were encrypted
    if not isinstance(data, dict):
        raise MalformedToken("the token is not a mapping")
    company_id, email = data.get("c"), data.get("e")
    # bool is an int subclass; a company id is a positive 64-bit integer.
    if type(company_id) is not int or not 0 < company_id < 2**63:
        raise MalformedToken("the token has no valid company id")
    if not isinstance(email, str) or "@" not in email or len(email) > 254 or "\x00" in email:
        raise MalformedToken("the token has no valid address")
    return company_id, email


def unsubscribe_url(company_id, email):
    # reverse() once with a stand-in token, then substitute: this runs once per email.
    prefix, suffix = _url_around_token(settings.SITE_URL)
    return prefix + make_token(company_id, email) + suffix


@functools.lru_cache(maxsize=4)
def _url_around_token(site_url):
    marker = "TOKEN"
    url = site_url + reverse("emails:unsubscribe", kwargs={"token": marker})
    prefix, _, suffix = url.rpartition(marker)
    return prefix, suffix


def suppress(company_id, email, reason, detail="", *, platform_wide=False):
    """Add an address to a company's suppression list (idempotent). `platform_wide`: the
    person asked for no card emails from any company (an existing entry is widened)."""
    EmailSuppression.objects.bulk_create(
        [
            EmailSuppression(
                company_id=company_id,
                email=email.lower(),
                reason=reason,
                detail=detail[:500],
                platform_wide=platform_wide,
            )
        ],
        ignore_conflicts=True,
    )
    if platform_wide:
        EmailSuppression.objects.filter(
            company_id=company_id, email=email.lower(), platform_wide=False
        ).update(platform_wide=True, reason=reason, detail=detail[:500])


def suppressed_among(company_id, emails):
    """The subset of these addresses (lower-cased) on the company's suppression list, or
    on any company's with platform_wide (no card emails from this platform at all)."""
    lowered = {e.lower() for e in emails}
    return set(
        EmailSuppression.objects.filter(
            Q(company_id=company_id) | Q(platform_wide=True), email__in=lowered
        ).values_list("email", flat=True)
    )
