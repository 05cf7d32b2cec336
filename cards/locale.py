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
from django.utils import timezone, translation

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
