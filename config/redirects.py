"""The one check for every `next` a page takes: a link or redirect back to our own site.

A `next` parameter comes from the request, so anyone can hand a signed-in admin a link
whose "Keep running" button or post-action redirect leads to `https://evil.example/phish`
or runs `javascript:`. Every view that renders or follows one goes through safe_next().
"""

from django.utils.http import url_has_allowed_host_and_scheme


def safe_next(request, value, fallback=""):
    """`value` if it is a URL on this site (a path, or an absolute URL of this host,
    https when the request is), else `fallback`."""
    value = (value or "").strip()
    if value and url_has_allowed_host_and_scheme(
        value, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return value
    return fallback
