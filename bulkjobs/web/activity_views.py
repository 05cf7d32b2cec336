"""The /background-jobs/activity page: summary numbers and charts of items processed and
failed per hour and per day, for each job kind, scoped to the user's company.

Kept apart from bulkjobs.web.views (the jobs pages); the numbers come from bulkjobs.web.charts.
"""

from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from cards.locale import company_time_zone
from cards.tenancy import company_member_required, current_membership

from . import dashboard


@require_GET
@company_member_required
def activity_page(request):
    """Charts and summary numbers; a fixed number of queries however much history exists
    (the active jobs' aggregate per kind, then a month of ActivityHour rows)."""
    company = current_membership(request).company
    now = timezone.now()
    return render(
        request,
        "bulkjobs/activity.html",
        {
            "activities": dashboard.activity_summary(company, now),
            "zone": company_time_zone(company),
        },
    )
