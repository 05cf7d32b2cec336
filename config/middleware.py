"""Project middleware: the Content-Security-Policy header (Django 5.2 has none built in)."""

from django.conf import settings


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
