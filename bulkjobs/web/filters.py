"""The dashboard's filters: status, kind, date range and creator, read from the query string.

"Status" has one choice that is not a status: "With failed items" (HAS_FAILURES), the
jobs with any failed item, whatever their status; a job that finished with some items
failed is "completed", and "Failed" alone (the job itself stopped) would not find it.

One form validates them for the HTML page and the JSON poll alike; invalid values become
form errors the page shows (never a 500), and only valid filters are applied. Dates are
whole days in the company's time zone, both ends included.

The operators' overview (bulkjobs.web.overview) has a company filter too, and its dates
are days in the operator's own (the active) zone. A company's dashboard has no company
field at all: a `company` parameter sent to it is never read.
"""

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from urllib.parse import urlencode

from django import forms
from django.contrib.auth import get_user_model
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from cards.locale import company_time_zone
from cards.models import Company

from ..models import Status

#: The status filter's value for "jobs with any failed item" (failed_items > 0).
HAS_FAILURES = "has_failures"

FILTER_FIELDS = ("status", "kind", "created_from", "created_to", "created_by")
#: The operators' overview filters by company too.
OVERVIEW_FIELDS = ("company", *FILTER_FIELDS)


class JobFilterForm(forms.Form):
    company = forms.ModelChoiceField(
        required=False,
        queryset=Company.objects.none(),
        empty_label=_("All companies"),
        label=_("Company"),
    )
    status = forms.ChoiceField(
        required=False,
        label=_("Status"),
        choices=[
            ("", _("Any status")),
            (HAS_FAILURES, _("With failed items")),
            # The job's own status; "failed" says the job stopped, not that items failed.
            *[
                (value, _("Failed (job stopped)") if value == Status.FAILED else label)
                for value, label in Status.choices
            ],
        ],
    )
    kind = forms.ChoiceField(required=False, label=_("Kind"))
    created_from = forms.DateField(
        required=False, label=_("Created from"), widget=forms.DateInput(attrs={"type": "date"})
    )
    created_to = forms.DateField(
        required=False, label=_("Created until"), widget=forms.DateInput(attrs={"type": "date"})
    )
    created_by = forms.ModelChoiceField(
        required=False,
        queryset=get_user_model().objects.none(),
        empty_label=_("Anyone"),
        label=_("Created by"),
    )

    def __init__(self, data, *, company, kinds, **kwargs):
        """`company`: the company whose dashboard this is, or None for the operators'
        overview of every company."""
        names = FILTER_FIELDS if company is not None else OVERVIEW_FIELDS
        # Only the filter parameters: the page numbers live in the same query string.
        super().__init__({name: data.get(name, "") for name in names}, **kwargs)
        self.company = company
        self.fields["kind"].choices = [("", _("All kinds"))] + [(k.name, k.label) for k in kinds]
        users = get_user_model().objects.order_by("username")
        if company is not None:
            del self.fields["company"]
            self.fields["created_by"].queryset = users.filter(memberships__company=company)
        else:
            self.fields["company"].queryset = Company.objects.order_by("name")
            self.fields["created_by"].queryset = users.filter(memberships__isnull=False).distinct()
        self.fields["created_by"].label_from_instance = lambda user: (
            user.get_full_name() or user.get_username()
        )

    def clean(self):
        data = super().clean()
        start, end = data.get("created_from"), data.get("created_to")
        if start and end and start > end:
            self.add_error("created_to", _("The end date is before the start date."))
        return data

    def _day_start(self, day):
        if self.company is None:
            zone = timezone.get_current_timezone()
        else:
            zone = company_time_zone(self.company)
        return datetime.combine(day, time.min, tzinfo=zone)

    def job_filter(self):
        """The valid filters as a JobFilter (an invalid field is left out, not guessed)."""
        self.is_valid()
        data = {name: value for name, value in self.cleaned_data.items() if value}
        q = Q()
        if data.get("status") == HAS_FAILURES:
            q &= Q(failed_items__gt=0)
        elif "status" in data:
            q &= Q(status=data["status"])
        if "created_from" in data:
            q &= Q(created_at__gte=self._day_start(data["created_from"]))
        if "created_to" in data:
            q &= Q(created_at__lt=self._day_start(data["created_to"] + timedelta(days=1)))
        if "created_by" in data:
            q &= Q(created_by=data["created_by"])
        raw = {name: self.data[name] for name in self.fields if name in self.cleaned_data}
        raw = {name: value for name, value in raw.items() if value}
        return JobFilter(
            q=q,
            kinds=[data["kind"]] if "kind" in data else None,
            company=data.get("company"),
            query=urlencode(raw),
            errors=[
                f"{self.fields[name].label or name.capitalize()}: {' '.join(errors)}"
                for name, errors in self.errors.items()
            ],
        )


@dataclass
class JobFilter:
    """What the dashboard shows: a condition on jobs and the kinds to list."""

    q: Q = field(default_factory=Q)
    kinds: list | None = None
    #: the one company the operators' overview is narrowed to (None: every company)
    company: Company | None = None
    #: the valid filters as a query string ("status=failed&kind=email"), for links
    query: str = ""
    errors: list = field(default_factory=list)

    @property
    def active(self):
        return bool(self.q) or self.kinds is not None or self.company is not None
