"""Sign-in throttling beyond django-axes: failures counted per client address whatever the
username, and per username from any address, each with lockouts that double.

django-axes (config/settings.py) locks one username from one address after
LOGIN_FAILURE_LIMIT failures. That leaves two attacks open, and each attempt costs a
password hash (about a second of CPU with PBKDF2 on a small machine; an unknown username
is hashed too, so that timing does not tell which exist):
- one address trying many usernames (0.8 attempts/s saturated two cores);
- many addresses trying one username.
So an address with LOGIN_ADDRESS_FAILURE_LIMIT failures, and a username with
LOGIN_USERNAME_FAILURE_LIMIT, are locked out for LOGIN_LOCKOUT_MINUTES, twice that the
next time, and so on up to LOGIN_LOCKOUT_MAX_MINUTES; a day without failures forgets
them. The check runs before the form authenticates: a locked-out request costs no hash.
A success clears its username's count, never its address's (one valid account must not
let an address go on guessing others).

The address is config.throttle.client_ip() (DJANGO_CLIENT_IP_HEADER behind a proxy).
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.dispatch import receiver
from django.utils import timezone

from cards.models import SignInThrottle

from .auth import lockout_response
from .throttle import client_key

log = logging.getLogger("config.signin")

#: Rows without a failure for this long are forgotten.
FORGET_AFTER = timedelta(days=1)


def _keys(request, username):
    keys = [("address", f"address:{client_key(request)}")]
    if username:
        keys.append(("username", f"username:{username.strip().lower()[:150]}"))
    return keys


def _limit(scope):
    return {
        "address": settings.LOGIN_ADDRESS_FAILURE_LIMIT,
        "username": settings.LOGIN_USERNAME_FAILURE_LIMIT,
    }[scope]


def locked_until(request, username):
    """(scope, until) of the lockout in force for this request's address or username, the
    longest first, or None. One query."""
    now = timezone.now()
    keys = dict((key, scope) for scope, key in _keys(request, username))
    rows = SignInThrottle.objects.filter(key__in=keys, locked_until__gt=now).values_list(
        "key", "locked_until"
    )
    found = sorted(((until, keys[key]) for key, until in rows), reverse=True)
    return (found[0][1], found[0][0]) if found else None


def record_failure(request, username):
    """Count one failed sign-in for the address and the username; lock either out once it
    reaches its limit (each lockout twice the previous one, up to the maximum)."""
    now = timezone.now()
    base = timedelta(minutes=settings.LOGIN_LOCKOUT_MINUTES)
    longest = timedelta(minutes=settings.LOGIN_LOCKOUT_MAX_MINUTES)
    for scope, key in _keys(request, username):
        with transaction.atomic():
            row = SignInThrottle.objects.select_for_update().filter(key=key).first()
            if row is None:
                try:
                    with transaction.atomic():
                        row = SignInThrottle.objects.create(key=key, last_failure_at=now)
                except IntegrityError:  # another request made it first
                    row = SignInThrottle.objects.select_for_update().get(key=key)
            # A day after its last failure, and after the end of its last lockout (so that
            # the longest lockout does not start the doubling over).
            if max(row.last_failure_at, row.locked_until or row.last_failure_at) < (
                now - FORGET_AFTER
            ):
                row.failures, row.lockouts = 0, 0
            if row.locked_until and row.locked_until > now:
                continue  # already locked out: failures meanwhile do not extend it
            row.failures += 1
            row.last_failure_at = now
            if row.failures >= _limit(scope):
                row.lockouts += 1
                row.failures = 0
                row.locked_until = now + min(base * 2 ** (row.lockouts - 1), longest)
                log.warning(
                    "Sign-in locked out for %s min by %s (lockout %s)",
                    int((row.locked_until - now).total_seconds() // 60),
                    scope,
                    row.lockouts,
                )
            row.save()
    # Rows quiet for a day, and out of their lockout for a day, say nothing any more.
    SignInThrottle.objects.filter(last_failure_at__lt=now - FORGET_AFTER).exclude(
        locked_until__gte=now - FORGET_AFTER
    ).delete()


@receiver(user_login_failed, dispatch_uid="config.signin.failed")
def _failed(sender, credentials, request=None, **kwargs):
    if request is None or getattr(request, "signin_throttled", False):
        return
    record_failure(request, (credentials or {}).get("username", ""))


@receiver(user_logged_in, dispatch_uid="config.signin.succeeded")
def _succeeded(sender, request, user, **kwargs):
    if request is None:
        return
    key = f"username:{user.get_username().strip().lower()[:150]}"
    SignInThrottle.objects.filter(key=key).exclude(locked_until__gt=timezone.now()).update(
        failures=0
    )


def _minutes_left(until):
    return max(1, -int(-(until - timezone.now()).total_seconds() // 60))


class LoginView(auth_views.LoginView):
    """Django's sign-in, refused with the lockout page (429) before any password is
    hashed while the address or the username is locked out."""

    def post(self, request, *args, **kwargs):
        lock = locked_until(request, request.POST.get("username", ""))
        if lock is not None:
            scope, until = lock
            return lockout_response(request, scope=scope, minutes=_minutes_left(until))
        return super().post(request, *args, **kwargs)


class ThrottleBackend:
    """First of AUTHENTICATION_BACKENDS: every other sign-in (the admin's) is refused the
    same way before a password is hashed."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is not None and locked_until(request, username or "") is not None:
            request.signin_throttled = True
            raise PermissionDenied("Sign-in is locked out for this address or username.")
        return None

    # No get_user(): it never signs anyone in, so no session names it (and force_login
    # passes over it).
