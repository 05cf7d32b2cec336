"""DKIM signing of the card emails by the app (RFC 6376, rsa-sha256, relaxed/relaxed).

Optional: with DKIM_DOMAIN, DKIM_SELECTOR and DKIM_PRIVATE_KEY_FILE set, every card email
sent through Django's SMTP or file backends gets a DKIM-Signature; without them the relay
is expected to sign (docs/sending-domain.md). An ESP's API signs on its side.

Cost. dkimpy's sign() takes ~8 ms per message on a small machine, almost all of it its
pure-Python RSA, three times the rest of a message's work. So the signature is made here,
with dkimpy's own relaxed canonicalization and the RSA of `cryptography` (~0.7 ms for a
2048-bit key); dkimpy verifies what this signs in the tests. The bodies of a batch's
messages differ only in the unsubscribe link, so the canonical form of everything else
(the MIME headers of the parts, the vCard) is made once per card and job (BodyHasher),
and each recipient's hash only goes over their two bodies.
"""

import base64
import functools
import hashlib
import os
import re
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from dkim.canonicalization import Relaxed, compress_whitespace, strip_trailing_whitespace

#: The header fields signed, as the issue lists them (#21): names absent from a message
#: (Reply-To when the company sets none) are signed as absent, so none can be added later.
SIGNED_HEADERS = (
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "mime-version",
    "content-type",
    "content-language",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "feedback-id",
)

# A header field: its name, and its value with any continuation lines.
_FIELD = re.compile(rb"^([!-9;-~]+)[ \t]*:(.*?\r\n(?:[ \t].*?\r\n)*)", re.MULTILINE | re.DOTALL)


def canonical_lines(data):
    """Relaxed body canonicalization of whole lines, without the end-of-body rule: parts
    of a body canonicalized one by one join into the canonical body (RFC 6376 3.4.4)."""
    return compress_whitespace(strip_trailing_whitespace(data))


def canonical_end(data):
    """The last part of a body, with the end-of-body rule too."""
    return Relaxed.canonicalize_body(data)


class BodyHasher:
    """The body hash of messages that share all but some parts: feed it the body in
    pieces, each a run of whole lines; shared pieces are canonicalized once by the caller
    (canonical_lines) and passed pre-canonicalized."""

    def __init__(self, canonical_prefix=b""):
        self._hash = hashlib.sha256(canonical_prefix)

    def copy(self):
        hasher = BodyHasher.__new__(BodyHasher)
        hasher._hash = self._hash.copy()
        return hasher

    def update(self, canonical):
        self._hash.update(canonical)

    def digest(self):
        return base64.b64encode(self._hash.digest())


class Signer:
    """Signs with one domain, selector and RSA key."""

    def __init__(self, domain, selector, key):
        self.domain = domain.encode("ascii")
        self.selector = selector.encode("ascii")
        self.key = key

    def body_hash(self, body):
        """The body hash of a whole body (messages not made from prebuilt bytes)."""
        return base64.b64encode(hashlib.sha256(canonical_end(body)).digest())

    def signature(self, header_block, body_hash, now=None):
        """The DKIM-Signature field (bytes, CRLF-terminated, folded within 78 characters)
        for a message with these header lines (up to, without, the empty line)."""
        fields = {}
        for name, value in _FIELD.findall(header_block):
            # The last instance of a name is the one signed first (RFC 6376 5.4.2); each
            # name is signed once, so the bottom-most is the one that counts.
            fields[name.lower()] = (name, value)
        signed = [name.encode("ascii") for name in SIGNED_HEADERS]
        timestamp = int(time.time() if now is None else now)
        head = (
            b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=" + self.domain + b";\r\n"
            b" s=" + self.selector + b"; t=" + str(timestamp).encode("ascii") + b";\r\n"
            b" h=" + _folded_list(signed) + b";\r\n"
            b" bh=" + body_hash + b";\r\n"
            b" b="
        )
        present = [fields[n] for n in signed if n in fields]
        name, _, value = head.partition(b":")
        lines = [
            b"%s:%s" % pair for pair in Relaxed.canonicalize_headers([*present, (name, value)])
        ]
        # The signature field itself goes in last, with an empty b= and no CRLF.
        data = b"".join(lines).removesuffix(b"\r\n")
        signature = base64.b64encode(self.key.sign(data, padding.PKCS1v15(), hashes.SHA256()))
        chunks = [signature[i : i + 72] for i in range(0, len(signature), 72)]
        return head + b"\r\n ".join([b"", *chunks]).removeprefix(b"\r\n ") + b"\r\n"


def _folded_list(names):
    """h=: the names joined by ":", folded before a name that would pass 76 characters."""
    lines, line = [], b""
    for name in names:
        piece = name if not line else b":" + name
        if line and len(line) + len(piece) > 70:
            lines.append(line + b":")
            line = name
        else:
            line += piece
    lines.append(line)
    return b"\r\n  ".join(lines)


def load_key(path):
    """The RSA private key of a PEM file; ImproperlyConfigured names what is wrong."""
    try:
        data = open(path, "rb").read()  # noqa: SIM115 (read at once, closed by refcount)
    except OSError as exc:
        raise ImproperlyConfigured(
            f"DKIM_PRIVATE_KEY_FILE {path!r} cannot be read: {exc.strerror}."
        ) from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            f"DKIM_PRIVATE_KEY_FILE {path!r} is not an unencrypted PEM private key ({exc})."
        ) from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ImproperlyConfigured(
            f"DKIM_PRIVATE_KEY_FILE {path!r} is not an RSA key; DKIM signs with rsa-sha256."
        )
    if key.key_size < 1024:
        raise ImproperlyConfigured(
            f"DKIM_PRIVATE_KEY_FILE {path!r} is a {key.key_size}-bit key; receivers ignore "
            "signatures of keys under 1024 bits (use 2048)."
        )
    return key


def configured():
    """Whether the app signs: any of the three DKIM settings set."""
    return bool(settings.DKIM_DOMAIN or settings.DKIM_SELECTOR or settings.DKIM_PRIVATE_KEY_FILE)


def signer():
    """The Signer of the DKIM settings, or None when the app does not sign. Raises
    ImproperlyConfigured when only some are set or the key does not load."""
    if not configured():
        return None
    missing = [
        name
        for name in ("DKIM_DOMAIN", "DKIM_SELECTOR", "DKIM_PRIVATE_KEY_FILE")
        if not getattr(settings, name)
    ]
    if missing:
        raise ImproperlyConfigured(
            f"{', '.join(missing)} not set: DKIM signing needs DKIM_DOMAIN, DKIM_SELECTOR "
            "and DKIM_PRIVATE_KEY_FILE together."
        )
    path = settings.DKIM_PRIVATE_KEY_FILE
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError:
        mtime = None
    return _signer(settings.DKIM_DOMAIN.lower(), settings.DKIM_SELECTOR, path, mtime)


@functools.lru_cache(maxsize=4)
def _signer(domain, selector, path, mtime):
    # Keyed by the file's modification time, so a rotated key is read again.
    return Signer(domain, selector, load_key(path))
