"""The unsubscribe endpoint: a confirmation page for people and RFC 8058 one-click POSTs for mail clients."""

from django.core import signing
from django.http import HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from cards.locale import company_locale, render_for_company
from cards.models import Company
from config import throttle

from .message import platform_name
from .models import EmailSuppression
from .unsubscribe import read_token, suppress


def _invalid(request):
    """404 for a link that is not (or no longer) ours. Not logged: django.request would
    log the path, token included (a mangled link is often most of a real one)."""
    response = render(request, "emails/unsubscribe.html", {"invalid": True}, status=404)
    return throttle.quiet(response)


# CSRF exemption is deliberate: RFC 8058 one-click POSTs come from mail providers with
# no session or CSRF cookie. The signed token in the URL is what authorises the request,
# and the only effect is adding that one address to the suppression list.
@csrf_exempt
@require_http_methods(["GET", "POST"])
def unsubscribe(request, token):
    # Each POST writes; mail providers' one-click POSTs for many recipients may come from
    # one address, hence a limit well above one person's clicks (UNSUBSCRIBE_RATE_LIMIT).
    if request.method == "POST" and not throttle.allow(
        request, "unsubscribe", throttle.rate_of("UNSUBSCRIBE_RATE_LIMIT", "60/min")
    ):
        return throttle.too_many()
    try:
        company_id, email = read_token(token)
    except signing.BadSignature:
        return _invalid(request)
    company = Company.objects.filter(pk=company_id).first()
    if company is None:
        return _invalid(request)
    if request.method == "POST":
        one_click = request.POST.get("List-Unsubscribe") == "One-Click"
        # One-click (RFC 8058) means this list, the company's; "from every company" is the
        # person's own choice on the page.
        platform_wide = not one_click and request.POST.get("scope") == "platform"
        suppress(
            company_id,
            email,
            EmailSuppression.Reason.UNSUBSCRIBED,
            "one-click"
            if one_click
            else "confirmation page, every company"
            if platform_wide
            else "confirmation page",
            platform_wide=platform_wide,
        )
        if one_click:
            with company_locale(company):
                return HttpResponse(_("Unsubscribed."), content_type="text/plain; charset=utf-8")
        return render_for_company(
            request,
            company,
            "emails/unsubscribe.html",
            {
                "company": company,
                "done": True,
                "platform_wide": platform_wide,
                "platform_name": platform_name(),
            },
        )
    # In the company's language, like the email the link came from.
    return render_for_company(
        request,
        company,
        "emails/unsubscribe.html",
        {"company": company, "email": email, "platform_name": platform_name()},
    )
