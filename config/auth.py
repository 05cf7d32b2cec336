"""Sign-in throttling: what a locked-out visitor sees (django-axes counts the failures of
one username from one address; config/signin.py those of an address and of a username)."""

from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.shortcuts import render

from config.redirects import safe_next
from config.throttle import quiet


def lockout_response(request, original_response=None, credentials=None, scope="", minutes=None):
    """The sign-in page again (429), with a notice instead of the usual mismatch error, in
    the visitor's language.

    Axes calls this for every sign-in attempt of a locked-out username from the same
    address, right password or not, until the cool-off ends; config.signin for a locked
    out address (`scope` "address") or username, with the minutes left.
    """
    username = (credentials or {}).get("username") or request.POST.get("username", "")
    context = {
        "form": AuthenticationForm(request, initial={"username": username}),
        "locked_out": True,
        "locked_scope": scope,
        "cooloff_minutes": (
            minutes
            if minutes is not None
            else int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
        ),
        "next": safe_next(request, request.POST.get("next", request.GET.get("next"))),
    }
    response = render(request, "registration/login.html", context, status=429)
    # The lockout itself is logged once when it starts; a line per refused attempt
    # (django.request's "Too Many Requests") would let a flood fill the log.
    return quiet(response)
