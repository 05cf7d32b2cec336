"""System checks for sending email: through an ESP (django-anymail) the extra must be
installed, and without a webhook secret the ESP's bounces never reach the suppression
list; the app's DKIM key must load and align with the From; `check --deploy` warns about
what keeps card emails out of the inbox (docs/sending-domain.md) and about SMTP without
BOUNCE_ADDRESS (bounces after acceptance are lost, docs/bounces.md)."""

import importlib.util

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from . import verp
from .webhooks import webhook_secret_configured


@checks.register("emails")
def check_esp_backend(app_configs, **kwargs):
    if not settings.EMAIL_BACKEND.startswith("anymail."):
        return []
    if importlib.util.find_spec("anymail") is None:
        return [
            checks.Error(
                f"EMAIL_BACKEND is {settings.EMAIL_BACKEND}, but django-anymail is not installed.",
                hint="pip install -r requirements-esp.txt",
                id="emails.E001",
            )
        ]
    if not webhook_secret_configured():
        return [
            checks.Warning(
                "ANYMAIL_WEBHOOK_SECRET is not set: the ESP's bounce and complaint webhooks "
                "are refused, so its bounces never reach the suppression list.",
                hint=(
                    "Set ANYMAIL_WEBHOOK_SECRET=user:password and give the ESP "
                    "https://user:password@<your site>/emails/anymail/<esp>/tracking/ "
                    "(docs/operations.md, ESP backends)."
                ),
                id="emails.W001",
            )
        ]
    return []


@checks.register("emails", deploy=True)
def check_bounce_address(app_configs, **kwargs):
    if settings.EMAIL_BACKEND.startswith("anymail."):
        return []  # the ESP's webhooks report its bounces
    try:
        address = verp.bounce_address()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="emails.E004")]
    if address is not None:
        return []
    return [
        checks.Warning(
            "BOUNCE_ADDRESS is not set: a mail server that accepts an email and bounces it "
            "later sends the bounce to the From address, the item stays 'sent' and the dead "
            "address is emailed again by every job.",
            hint=(
                "Set BOUNCE_ADDRESS (bounces@bounce.example.com) and feed its mail to "
                "`manage.py process_bounces` (docs/bounces.md)."
            ),
            id="emails.W005",
        )
    ]


# Second-level labels under which country domains register names (example.co.uk): the
# organisational domain is then three labels. A heuristic where the Public Suffix List
# is not at hand; it errs towards "not aligned", which only asks for a look.
_REGISTRY_LABELS = {"co", "com", "net", "org", "gov", "ac", "edu", "ne", "or", "ltd", "plc"}


def organisational_domain(domain):
    labels = domain.lower().rstrip(".").split(".")
    size = 3 if len(labels) > 2 and len(labels[-1]) == 2 and labels[-2] in _REGISTRY_LABELS else 2
    return ".".join(labels[-size:])


def aligned(dkim_domain, from_domain):
    """DMARC's relaxed alignment: both in the same organisational domain (RFC 7489 3.1.1)."""
    return organisational_domain(dkim_domain) == organisational_domain(from_domain)


@checks.register("emails")
def check_dkim(app_configs, **kwargs):
    """The app's DKIM key must load, and its domain align with the From's, or DMARC
    fails although the signature verifies."""
    from . import signing
    from .message import sender_address

    try:
        signer = signing.signer()
    except ImproperlyConfigured as exc:
        return [
            checks.Error(
                str(exc),
                hint="docs/sending-domain.md says how to make a key and publish it.",
                id="emails.E002",
            )
        ]
    if signer is None:
        return []
    from_domain = sender_address().rpartition("@")[2]
    if not aligned(settings.DKIM_DOMAIN, from_domain):
        return [
            checks.Error(
                f"DKIM_DOMAIN {settings.DKIM_DOMAIN!r} is not aligned with DEFAULT_FROM_EMAIL's "
                f"domain {from_domain!r}: DMARC passes only when the signing domain is the "
                "From's domain or shares its organisational domain.",
                hint="Sign with the From's domain (or a subdomain of it), or send from one.",
                id="emails.E003",
            )
        ]
    return []


@checks.register("emails", deploy=True)
def check_sending_domain(app_configs, **kwargs):
    """`check --deploy` only: what keeps card emails out of the inbox (docs/sending-domain.md)."""
    from urllib.parse import urlsplit

    from . import signing
    from .message import sender_address

    warnings = []
    site = urlsplit(settings.SITE_URL)
    host = (site.hostname or "").lower()
    if (
        site.scheme != "https"
        or host in ("localhost", "127.0.0.1", "::1")
        or host.endswith(".localhost")
    ):
        warnings.append(
            checks.Warning(
                f"SITE_URL is {settings.SITE_URL!r}: the one-click unsubscribe link, the card "
                "links and the wallet links in every email point there.",
                hint="Set SITE_URL to the site's public https:// address.",
                id="emails.W002",
            )
        )
    from_domain = sender_address().rpartition("@")[2].lower()
    if from_domain in ("example.com", "example.org", "example.net") or from_domain.endswith(
        (".example.com", ".example.org", ".example.net", ".example", ".invalid", ".test")
    ):
        warnings.append(
            checks.Warning(
                f"DEFAULT_FROM_EMAIL {settings.DEFAULT_FROM_EMAIL!r} is at a reserved example "
                "domain: mail from it fails SPF, DKIM and DMARC everywhere.",
                hint="Send from an address of a domain you control (docs/sending-domain.md).",
                id="emails.W003",
            )
        )
    if not signing.configured() and not settings.EMAIL_RELAY_SIGNS:
        warnings.append(
            checks.Warning(
                "Card emails are not DKIM-signed by the app (no DKIM_DOMAIN, DKIM_SELECTOR, "
                "DKIM_PRIVATE_KEY_FILE) and EMAIL_RELAY_SIGNS does not say that the relay "
                "signs them: Gmail, Yahoo and Outlook require DKIM of bulk senders.",
                hint=(
                    "Set the DKIM_* settings, or have the relay sign (covering List-Unsubscribe "
                    "and List-Unsubscribe-Post) and set EMAIL_RELAY_SIGNS=1."
                ),
                id="emails.W004",
            )
        )
    return warnings
