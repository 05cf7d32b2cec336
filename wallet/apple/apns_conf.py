"""APNs settings, read lazily and validated in one place for the client and the checks.

Kept free of httpx and pyjwt, so that the system checks can use it without loading
the client. Token auth needs the .p8 key Apple issues under "Keys" in the developer
account: a PKCS#8 PEM EC private key on P-256 (ES256), a 10-character key id, and the
10-character team id the key belongs to.
"""

import re
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

PRODUCTION_URL = "https://api.push.apple.com"
PRODUCTION_HOST = "api.push.apple.com"
PRODUCTION = "production"
SANDBOX = "sandbox"
ENVIRONMENTS = ("auto", PRODUCTION, SANDBOX)
# Apple's key ids and team ids: ten upper-case letters and digits.
APPLE_ID = re.compile(r"[A-Z0-9]{10}")


def _setting(name, default=""):
    return str(getattr(settings, name, default) or default).strip()


def base_url():
    return _setting("APNS_BASE_URL", PRODUCTION_URL)


def environment():
    """PRODUCTION or SANDBOX: which APNs environment APNS_BASE_URL reaches.

    APNS_ENVIRONMENT "auto" (the default) means production exactly when the host is
    api.push.apple.com; a relay in front of the production APNs sets "production".
    Raises ImproperlyConfigured for any other value.
    """
    configured = _setting("APNS_ENVIRONMENT", "auto").lower()
    if configured not in ENVIRONMENTS:
        raise ImproperlyConfigured(
            f"APNS_ENVIRONMENT must be auto, production or sandbox, got {configured!r}."
        )
    if configured != "auto":
        return configured
    host = urlsplit(base_url()).hostname or ""
    return PRODUCTION if host == PRODUCTION_HOST else SANDBOX


def key_file():
    return _setting("APNS_KEY_FILE")


def key_id():
    return _setting("APNS_KEY_ID")


def load_token_key(path):
    """The APNs auth key at `path` (its PEM bytes), checked to be an EC P-256 private key.

    Raises ImproperlyConfigured saying what is wrong and what to use instead.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise ImproperlyConfigured(f"APNS_KEY_FILE: cannot read {path!r}: {exc.strerror}.") from exc
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            f"APNS_KEY_FILE {path!r} is not a PEM private key; use the AuthKey_<key id>.p8 "
            "file downloaded under Certificates, Identifiers & Profiles > Keys."
        ) from exc
    if isinstance(key, rsa.RSAPrivateKey):
        raise ImproperlyConfigured(
            f"APNS_KEY_FILE {path!r} holds an RSA key; APNs token auth needs the EC P-256 "
            "key (.p8) of an Apple Push Notifications service key, not a certificate's key."
        )
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ImproperlyConfigured(
            f"APNS_KEY_FILE {path!r} is not an EC key; APNs token auth needs the EC P-256 "
            "key (.p8) Apple issues."
        )
    if not isinstance(key.curve, ec.SECP256R1):
        raise ImproperlyConfigured(
            f"APNS_KEY_FILE {path!r} is an EC key on {key.curve.name}; APNs signs with "
            "ES256, which needs P-256 (secp256r1)."
        )
    return data


def key_id_problem():
    """What is wrong with APNS_KEY_ID for token auth, or ""."""
    if not key_id():
        return "APNS_KEY_FILE is set but APNS_KEY_ID is empty."
    if not APPLE_ID.fullmatch(key_id()):
        return f"APNS_KEY_ID {key_id()!r} is not a key id (10 characters, A-Z and 0-9)."
    return ""


def team_id_problem(team_id):
    """What is wrong with the team id as the provider token's issuer, or ""."""
    if not APPLE_ID.fullmatch(team_id or ""):
        return (
            f"APPLE_TEAM_ID {team_id!r} is not a team id (10 characters, A-Z and 0-9); "
            "APNs takes it as the provider token's issuer."
        )
    return ""
