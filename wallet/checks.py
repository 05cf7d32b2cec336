"""System checks for the Apple Wallet certificates and APNs (`manage.py check`).

The certificate checks only run when Apple Wallet is at least partly configured. They
catch what otherwise only shows up as passes a device silently refuses: a missing file,
an expired certificate, a pass certificate not issued by the configured WWDR
intermediate, or a team / pass type id that differs from the certificate's subject.
The APNs checks catch what otherwise pauses every wallet job: a token key that is not
Apple's EC P-256 .p8 key, a malformed key or team id; `check --deploy` also warns about
an APNs sandbox URL, where customers' devices' tokens are refused.
"""

import datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from .apple import apns_conf, conf

EXPIRY_WARNING_DAYS = 30
FILE_SETTINGS = (
    "APPLE_PASS_CERT",
    "APPLE_PASS_KEY",
    "APPLE_PASS_P12",
    "APPLE_WWDR_CERT",
    "APNS_CA_FILE",
)


def _subject_value(cert, oid):
    values = cert.subject.get_attributes_for_oid(oid)
    return str(values[0].value) if values else ""


def _expiry_messages(cert, setting, now):
    not_after = cert.not_valid_after_utc
    if not_after <= now:
        return [
            checks.Error(
                f"{setting}: the certificate expired on {not_after:%Y-%m-%d}.",
                hint="Renew it in the Apple Developer portal and point the setting at the "
                "new file.",
                id="wallet.E002",
            )
        ]
    if cert.not_valid_before_utc > now:
        return [
            checks.Error(
                f"{setting}: the certificate is not valid before "
                f"{cert.not_valid_before_utc:%Y-%m-%d}.",
                id="wallet.E002",
            )
        ]
    if not_after - now <= datetime.timedelta(days=EXPIRY_WARNING_DAYS):
        return [
            checks.Warning(
                f"{setting}: the certificate expires on {not_after:%Y-%m-%d}.",
                hint="Renew it soon; passes cannot be signed with an expired certificate.",
                id="wallet.W002",
            )
        ]
    return []


@checks.register("wallet")
def check_apple_wallet(app_configs=None, **kwargs):
    if not conf.is_partly_configured():
        return []
    messages = []
    missing = conf.missing_settings()
    if missing:
        return [
            checks.Warning(
                "Apple Wallet is partly configured; missing: " + ", ".join(missing) + ".",
                hint="Set the missing settings, or clear the others to turn Apple Wallet off.",
                id="wallet.W001",
            )
        ]
    for name in FILE_SETTINGS:
        path = (getattr(settings, name, "") or "").strip()
        if path and not _readable(path):
            messages.append(
                checks.Error(
                    f"{name}: file {path!r} does not exist or is unreadable.", id="wallet.E001"
                )
            )
    if messages:
        return messages
    try:
        material = conf.signing_material()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="wallet.E001")]
    now = datetime.datetime.now(datetime.UTC)
    cert_setting = "APPLE_PASS_P12" if settings.APPLE_PASS_P12 else "APPLE_PASS_CERT"
    messages += _expiry_messages(material.certificate, cert_setting, now)
    messages += _expiry_messages(material.wwdr, "APPLE_WWDR_CERT", now)
    try:
        material.certificate.verify_directly_issued_by(material.wwdr)
    except (InvalidSignature, ValueError, TypeError) as exc:
        messages.append(
            checks.Error(
                f"{cert_setting} was not issued by the APPLE_WWDR_CERT certificate "
                f"({str(exc) or 'signature does not match'}).",
                hint="Use the WWDR intermediate that issued your pass certificate (G4 for "
                "certificates issued after January 2022).",
                id="wallet.E003",
            )
        )
    team = _subject_value(material.certificate, NameOID.ORGANIZATIONAL_UNIT_NAME)
    if team != conf.team_id():
        messages.append(
            checks.Error(
                f"APPLE_TEAM_ID is {conf.team_id()!r} but the pass certificate belongs to team "
                f"{team!r} (its subject OU).",
                id="wallet.E004",
            )
        )
    pass_type = _subject_value(material.certificate, NameOID.USER_ID)
    if pass_type and pass_type != conf.pass_type_id():
        messages.append(
            checks.Error(
                f"APPLE_PASS_TYPE_ID is {conf.pass_type_id()!r} but the pass certificate is for "
                f"{pass_type!r} (its subject UID).",
                id="wallet.E005",
            )
        )
    if _public_bytes(material.private_key.public_key()) != _public_bytes(
        material.certificate.public_key()
    ):
        messages.append(
            checks.Error(
                "APPLE_PASS_KEY does not belong to the pass certificate.", id="wallet.E006"
            )
        )
    return messages


@checks.register("wallet", deploy=True)
def check_apple_web_service_url(app_configs=None, **kwargs):
    """`check --deploy` only: plain HTTP is normal in development."""
    if not conf.is_configured() or conf.web_service_url().startswith("https://"):
        return []
    return [
        checks.Warning(
            f"APPLE_WEB_SERVICE_URL {conf.web_service_url()!r} is not HTTPS; devices only "
            "register with HTTPS web services.",
            id="wallet.W003",
        )
    ]


@checks.register("wallet")
def check_apns_settings(app_configs=None, **kwargs):
    """The token-auth key and ids, parsed as the APNs client will (see apns_conf)."""
    messages = []
    try:
        apns_conf.environment()
    except ImproperlyConfigured as exc:
        messages.append(checks.Error(str(exc), id="wallet.E010"))
    if not apns_conf.key_file():
        if apns_conf.key_id():
            messages.append(
                checks.Warning(
                    "APNS_KEY_ID is set but APNS_KEY_FILE is not; pushes use the pass "
                    "certificate instead of token auth.",
                    hint="Set APNS_KEY_FILE to the AuthKey_<key id>.p8 file, or clear APNS_KEY_ID.",
                    id="wallet.W004",
                )
            )
        return messages
    try:
        apns_conf.load_token_key(apns_conf.key_file())
    except ImproperlyConfigured as exc:
        messages.append(checks.Error(str(exc), id="wallet.E007"))
    problem = apns_conf.key_id_problem()
    if problem:
        messages.append(
            checks.Error(
                problem,
                hint="Copy the key id shown beside the key under Certificates, Identifiers & "
                "Profiles > Keys (also in the .p8 file's name).",
                id="wallet.E008",
            )
        )
    problem = apns_conf.team_id_problem(conf.team_id())
    if problem:
        messages.append(
            checks.Error(
                problem,
                hint="Copy the team id from the Membership page of the Apple Developer account.",
                id="wallet.E009",
            )
        )
    return messages


@checks.register("wallet", deploy=True)
def check_apns_environment(app_configs=None, **kwargs):
    """`check --deploy` only: the sandbox is normal in development."""
    if not conf.is_configured():
        return []
    try:
        environment = apns_conf.environment()
    except ImproperlyConfigured:
        return []  # reported by check_apns_settings()
    if environment == apns_conf.PRODUCTION:
        return []
    return [
        checks.Warning(
            f"APNS_BASE_URL {apns_conf.base_url()!r} is not the production APNs; the passes "
            "on customers' devices have production push tokens, which the sandbox refuses "
            "(BadDeviceToken), so they are not updated.",
            hint=f"Set APNS_BASE_URL={apns_conf.PRODUCTION_URL} (or APNS_ENVIRONMENT="
            "production for a relay in front of it).",
            id="wallet.W005",
        )
    ]


def _readable(path):
    try:
        with open(path, "rb"):
            return True
    except OSError:
        return False


def _public_bytes(key):
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
