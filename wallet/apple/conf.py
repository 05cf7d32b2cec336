"""Apple Wallet settings, read lazily from django.conf.settings and validated on use.

`missing_settings()` names what is absent (for UIs and the job's "skipped" note);
`signing_material()` loads the pass certificate, its key and the WWDR intermediate,
cached per (path, modification time) so a batch does not re-read files per card, while
a replaced certificate is picked up by a long-running worker.
"""

import os
from dataclasses import dataclass
from functools import lru_cache

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key, pkcs12
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from wallet.errors import NotConfigured


def _setting(name):
    return (getattr(settings, name, "") or "").strip()


def missing_settings():
    """Names of the settings Apple Wallet still needs; empty when it is configured.

    APPLE_PASS_P12 replaces APPLE_PASS_CERT + APPLE_PASS_KEY; only the pair is named
    when neither form is set.
    """
    missing = []
    if not _setting("APPLE_PASS_P12"):
        missing += [name for name in ("APPLE_PASS_CERT", "APPLE_PASS_KEY") if not _setting(name)]
    missing += [
        name
        for name in ("APPLE_WWDR_CERT", "APPLE_TEAM_ID", "APPLE_PASS_TYPE_ID")
        if not _setting(name)
    ]
    return missing


def is_configured():
    return not missing_settings()


def is_partly_configured():
    """True when someone started configuring Apple Wallet (any of its settings is set)."""
    names = (
        "APPLE_PASS_CERT",
        "APPLE_PASS_KEY",
        "APPLE_PASS_P12",
        "APPLE_WWDR_CERT",
        "APPLE_TEAM_ID",
        "APPLE_PASS_TYPE_ID",
    )
    return any(_setting(name) for name in names)


def pass_type_id():
    return _setting("APPLE_PASS_TYPE_ID")


def team_id():
    return _setting("APPLE_TEAM_ID")


def web_service_url():
    url = _setting("APPLE_WEB_SERVICE_URL") or settings.SITE_URL + "/wallet/apple/"
    return url if url.endswith("/") else url + "/"


@dataclass(frozen=True)
class SigningMaterial:
    certificate: x509.Certificate
    private_key: object
    wwdr: x509.Certificate


def _read(path, setting):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise ImproperlyConfigured(f"{setting}: cannot read {path!r}: {exc.strerror}.") from exc


def _mtime(path):
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def load_certificate(data, setting):
    """A certificate from PEM or DER bytes."""
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{setting} is not a PEM or DER certificate.") from exc


def _password(name):
    value = _setting(name)
    return value.encode() if value else None


@lru_cache(maxsize=4)
def _load(p12, p12_mtime, cert, cert_mtime, key, key_mtime, wwdr, wwdr_mtime, pw, p12_pw):
    # The mtimes are part of the cache key only, so a replaced file is read again.
    if p12:
        try:
            key_obj, cert_obj, _extra = pkcs12.load_key_and_certificates(
                _read(p12, "APPLE_PASS_P12"), p12_pw
            )
        except ValueError as exc:
            raise ImproperlyConfigured(
                "APPLE_PASS_P12 cannot be opened (wrong APPLE_PASS_P12_PASSWORD?)."
            ) from exc
        if key_obj is None or cert_obj is None:
            raise ImproperlyConfigured("APPLE_PASS_P12 must hold the pass certificate and its key.")
    else:
        cert_obj = load_certificate(_read(cert, "APPLE_PASS_CERT"), "APPLE_PASS_CERT")
        try:
            key_obj = load_pem_private_key(_read(key, "APPLE_PASS_KEY"), pw)
        except (ValueError, TypeError) as exc:
            raise ImproperlyConfigured(
                "APPLE_PASS_KEY cannot be loaded (not a PEM key, or wrong APPLE_PASS_KEY_PASSWORD)."
            ) from exc
    wwdr_obj = load_certificate(_read(wwdr, "APPLE_WWDR_CERT"), "APPLE_WWDR_CERT")
    return SigningMaterial(cert_obj, key_obj, wwdr_obj)


def signing_material():
    """Pass certificate, key and WWDR certificate.

    Raises NotConfigured when settings are missing, ImproperlyConfigured when files are
    unreadable or invalid.
    """
    missing = missing_settings()
    if missing:
        raise NotConfigured("Apple Wallet is not configured: set " + ", ".join(missing) + ".")
    p12, cert, key, wwdr = (
        _setting("APPLE_PASS_P12"),
        _setting("APPLE_PASS_CERT"),
        _setting("APPLE_PASS_KEY"),
        _setting("APPLE_WWDR_CERT"),
    )
    return _load(
        p12,
        _mtime(p12) if p12 else None,
        cert,
        _mtime(cert) if cert else None,
        key,
        _mtime(key) if key else None,
        wwdr,
        _mtime(wwdr),
        _password("APPLE_PASS_KEY_PASSWORD"),
        _password("APPLE_PASS_P12_PASSWORD"),
    )
