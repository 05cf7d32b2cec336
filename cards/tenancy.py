"""Tenant scoping for the web app: every view sees only its user's company.

A user belongs to at most one company (Membership). Anonymous users are sent to sign
in; signed-in users without a company get 404 (there is nothing of theirs to show).
Objects are always fetched through `get_company_object_or_404`, so another company's
object is indistinguishable from a missing one (404), whether it is read or acted on.
Acting (starting, cancelling, retrying) needs the company's admin role: members get 403.

Platform operators (active staff users) may also *read* every company's jobs: the
`/background-jobs/` overview across companies and any job's page (`operator_overview`,
`member_or_operator_required`, `get_visible_object_or_404`). Only reads: acting still
goes through `get_company_object_or_404` and the company admin role, so being staff
never lets anyone act on another company's objects from the app (the Django admin is
the operators' tool for that).
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


def is_operator(request):
    """A platform operator: a signed-in, active staff user (the people of the admin)."""
    user = request.user
    return bool(user.is_authenticated and user.is_active and user.is_staff)


#: The query parameter that asks for the operator overview ("?view=all").
OVERVIEW_PARAM = "view"
OVERVIEW_VALUE = "all"


def operator_overview(request):
    """Whether /background-jobs/ shows every company's jobs to this request.

    An operator who belongs to no company has nothing else to see, so gets the overview.
    An operator who is also a member of a company sees that company by default, as its
    other members do, and the overview when asking for it (?view=all, the page's "All
    companies" switch). Anyone else never: the parameter is ignored.
    """
    if not is_operator(request):
        return False
    if membership_or_none(request) is None:
        return True
    return request.GET.get(OVERVIEW_PARAM) == OVERVIEW_VALUE


def get_visible_object_or_404(request, queryset, **lookup):
    """The object matching `lookup` the user may *read*: any company's for an operator,
    else only one of the user's company (404 for the others, as get_company_object_or_404)."""
    if is_operator(request):
        return get_object_or_404(queryset, **lookup)
    return get_company_object_or_404(request, queryset, **lookup)


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


def member_or_operator_required(view):
    """Signed in and a member of a company, or a platform operator (read-only pages
    that operators may see for every company)."""

    @login_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not is_operator(request):
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
