"""Template context for every page: the viewer's company role, for menus and 403 pages.

Values are callables, so a page that never asks (the public card page, the sign-in
form) costs no query; the membership is the one cards.tenancy caches on the request.
"""

from django.http import Http404

from cards.models import Membership
from cards.tenancy import current_membership, is_operator


def company_roles(request):
    def membership():
        if not request.user.is_authenticated:
            return None
        try:
            return current_membership(request)
        except Http404:
            return None

    def is_company_admin():
        found = membership()
        return bool(found and found.is_admin)

    def operator():
        """Platform operators (staff) see technical hints: cron, commands, settings."""
        return is_operator(request)

    def company_admins():
        """Names of the company's admins: who a member can ask for more."""
        found = membership()
        if found is None:
            return []
        admins = Membership.objects.filter(
            company_id=found.company_id, role=Membership.Role.ADMIN
        ).select_related("user")
        return sorted(m.user.get_full_name() or m.user.get_username() for m in admins)

    return {
        "company_membership": membership,
        "is_company_admin": is_company_admin,
        "is_operator": operator,
        "company_admins": company_admins,
    }
