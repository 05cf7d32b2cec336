"""Signed one-click unsubscribe tokens (RFC 8058) and the suppression list they feed."""

import functools

from django.conf import settings
from django.core import signing
from django.db.models import Q
from django.urls import reverse

from .models import EmailSuppression

_SALT = "emails.unsubscribe"


def make_token(company_id, email):
    return signing.dumps({"c": company_id, "e": email.lower()}, salt=_SALT, compress=True)


class MalformedToken(signing.BadSignature):
    """Correctly signed, but not the structure make_token() signs (an old or foreign token)."""


def read_token(token):
    """Return (company_id, email) or raise signing.BadSignature (MalformedToken included)."""
    data = signing.loads(token, salt=_SALT)
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
