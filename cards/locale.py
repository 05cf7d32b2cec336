"""A company's language and time zone, made the active ones while its pages or emails are made.

Pages of a signed-in company user get them from config.middleware.CompanyLocaleMiddleware;
public pages that belong to one company (a card, an unsubscribe link) and the emails
sent for it enter company_locale() themselves. Everything else (the sign-in page, the
operators' admin) keeps the browser's language (LocaleMiddleware) and settings.TIME_ZONE.
"""

import contextlib
import logging
import zoneinfo

from django.conf import settings
from django.shortcuts import render
from django.utils import dateformat, timezone, translation

log = logging.getLogger(__name__)


def company_time_zone(company):
    """The company's zone; settings.TIME_ZONE (with a warning) for a name this machine lacks.

    The model validates the name, but a zone can vanish with an older tzdata, and a
    page must not break over it.
    """
    try:
        return zoneinfo.ZoneInfo(company.time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        log.warning(
            "Company %s has an unknown time zone %r; showing %s instead",
            company.pk,
            company.time_zone,
            settings.TIME_ZONE,
        )
        return zoneinfo.ZoneInfo(settings.TIME_ZONE)


def company_language(company):
    """The company's language if the site offers it, else settings.LANGUAGE_CODE."""
    offered = {code for code, _name in settings.LANGUAGES}
    return company.language if company.language in offered else settings.LANGUAGE_CODE


@contextlib.contextmanager
def company_locale(company):
    """Make the company's language and time zone the active ones, restoring them after."""
    with (
        translation.override(company_language(company)),
        timezone.override(company_time_zone(company)),
    ):
        yield


def render_for_company(request, company, template_name, context=None, status=None):
    """render(), in the company's language and time zone (for public pages of one company)."""
    with company_locale(company):
        response = render(request, template_name, context, status=status)
        # LocaleMiddleware would otherwise name the browser's language.
        response.headers["Content-Language"] = translation.get_language()
    return response


def zone_name(value):
    """The zone's abbreviation at that moment ("CET", "CEST", "UTC"), or its IANA name
    where the zone has no letters of its own (Asia/Dubai is "+04": "Asia/Dubai")."""
    name = value.tzname() if timezone.is_aware(value) else None
    if not name or name[0] in "+-":
        name = (
            str(value.tzinfo) if timezone.is_aware(value) else timezone.get_current_timezone_name()
        )
    return name


def format_zoned(value, format_string="Y-m-d H:i"):
    """A date and time in the active time zone, with the zone named: "2026-01-15 14:05 CET"."""
    if timezone.is_aware(value):
        value = timezone.localtime(value)
    return f"{dateformat.format(value, format_string)} {zone_name(value)}"
