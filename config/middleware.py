"""Project middleware: the Content-Security-Policy header (Django 5.2 has none built in),
no caching of signed-in pages, and the signed-in company's language and time zone."""

from django.conf import settings
from django.utils import timezone, translation
from django.utils.cache import patch_cache_control

from cards.locale import company_locale
from cards.tenancy import membership_or_none


class ContentSecurityPolicyMiddleware:
    """Send settings.CONTENT_SECURITY_POLICY on every response that has none of its own.

    The pages load scripts and styles from our static files only and have no inline
    script, event handler or style attribute, so the policy can forbid all of them: an
    injected `<script>` or `onerror=` then does nothing in a browser.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if settings.CONTENT_SECURITY_POLICY:
            response.headers.setdefault("Content-Security-Policy", settings.CONTENT_SECURITY_POLICY)
        return response


class PrivateNoStoreMiddleware:
    """`Cache-Control: private, no-store` on every response to a signed-in user.

    A company's pages, JSON polls and CSV exports are that company's data: no shared
    cache (a proxy, a CDN) may keep them, nor the browser's disk after sign-out. Responses
    to anonymous visitors (public card pages, static files, the PassKit web service) keep
    their own caching headers.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            # Added to what the view said (the polls' no-cache and ETag stay).
            patch_cache_control(response, private=True, no_store=True)
        return response


class CompanyLocaleMiddleware:
    """A company user's pages in the company's language and time zone.

    Runs after LocaleMiddleware (the browser's language, the fallback) and
    AuthenticationMiddleware. Anyone not in a company (signed out, an operator) keeps
    the browser's language and settings.TIME_ZONE. The membership is looked up once and
    cached on the request, so views asking for it again cost no query.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        membership = membership_or_none(request)
        if membership is None:
            # A thread serves many requests: never keep a previous company's zone.
            with timezone.override(None):
                return self.get_response(request)
        with company_locale(membership.company):
            request.LANGUAGE_CODE = translation.get_language()
            response = self.get_response(request)
        # LocaleMiddleware, outside this one, would name the browser's language.
        response.headers["Content-Language"] = request.LANGUAGE_CODE
        return response
