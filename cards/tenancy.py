"""Tenant scoping for the web app: every view sees only its user's company.

A user belongs to at most one company (Membership). Anonymous users are sent to sign
in; signed-in users without a company get 404 (there is nothing of theirs to show).
Objects are always fetched through `get_company_object_or_404`, so another company's
object is indistinguishable from a missing one (404), whether it is read or acted on.
Acting (starting, cancelling, retrying) needs the company's admin role: members get 403.
"""

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _

from .models import Membership


def membership_or_none(request):
    """The signed-in user's membership, or None; looked up once per request."""
    if not hasattr(request, "_membership"):
        request._membership = (
            Membership.objects.select_related("company").filter(user_id=request.user.pk).first()
            if request.user.is_authenticated
            else None
        )
    return request._membership


def current_membership(request):
    """The signed-in user's membership (cached on the request); Http404 if there is none."""
    membership = membership_or_none(request)
    if membership is None:
        raise Http404("You are not a member of any company.")
    return membership


def current_company(request):
    return current_membership(request).company


def get_company_object_or_404(request, queryset, **lookup):
    """The object of the user's company matching `lookup`; 404 for any other company's."""
    return get_object_or_404(queryset, company=current_company(request), **lookup)


def require_company_admin(request):
    """Raise PermissionDenied (403) unless the user is an admin of their company."""
    if not current_membership(request).is_admin:
        raise PermissionDenied(_("Only company admins can do this."))


def company_member_required(view):
    """Signed in and a member (any role) of a company."""

    @login_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        current_membership(request)
        return view(request, *args, **kwargs)

    return wrapper


def company_admin_required(view):
    """Signed in and an admin of a company.

    Views that act on one object should use company_member_required, fetch the object
    with get_company_object_or_404 first and then call require_company_admin, so that
    other companies' objects answer 404 rather than 403.
    """

    @login_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        require_company_admin(request)
        return view(request, *args, **kwargs)

    return wrapper
