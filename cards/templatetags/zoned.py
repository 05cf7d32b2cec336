"""The `zoned` filter: a time in the company's time zone, with the zone named.

    {% load zoned %}{{ job.created_at|zoned }}            2026-01-15 14:05 CET
    {{ job.finished_at|zoned:"Y-m-d H:i:s" }}             2026-07-15 14:05:09 CEST

The active zone is the signed-in company's (config.middleware.CompanyLocaleMiddleware),
so a bare "14:05" is never ambiguous between the company, the server and the browser.
"""

from django import template

from cards.locale import format_zoned

register = template.Library()


@register.filter(expects_localtime=True)
def zoned(value, format_string="Y-m-d H:i"):
    if value in (None, ""):
        return ""
    return format_zoned(value, format_string)
