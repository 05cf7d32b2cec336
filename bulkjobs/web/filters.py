"""The dashboard's filters: status, kind, date range and creator, read from the query string.

One form validates them for the HTML page and the JSON poll alike; invalid values become
form errors the page shows (never a 500), and only valid filters are applied. Dates are
whole days in the company's time zone, both ends included.
"""

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from urllib.parse import urlencode

from django import forms
from django.contrib.auth import get_user_model
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from cards.locale import company_time_zone

from ..models import Status

FILTER_FIELDS = ("status", "kind", "created_from", "created_to", "created_by")


class JobFilterForm(forms.Form):
    status = forms.ChoiceField(
        required=False, label=_("Status"), choices=[("", _("Any status")), *Status.choices]
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
        # Only the filter parameters: the page numbers live in the same query string.
        super().__init__({name: data.get(name, "") for name in FILTER_FIELDS}, **kwargs)
        self.company = company
        self.fields["kind"].choices = [("", _("All kinds"))] + [(k.name, k.label) for k in kinds]
        self.fields["created_by"].queryset = (
            get_user_model().objects.filter(memberships__company=company).order_by("username")
        )
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
        return datetime.combine(day, time.min, tzinfo=company_time_zone(self.company))

    def job_filter(self):
        """The valid filters as a JobFilter (an invalid field is left out, not guessed)."""
        self.is_valid()
        data = {name: value for name, value in self.cleaned_data.items() if value}
        q = Q()
        if "status" in data:
            q &= Q(status=data["status"])
        if "created_from" in data:
            q &= Q(created_at__gte=self._day_start(data["created_from"]))
        if "created_to" in data:
            q &= Q(created_at__lt=self._day_start(data["created_to"] + timedelta(days=1)))
        if "created_by" in data:
            q &= Q(created_by=data["created_by"])
        raw = {name: self.data[name] for name in FILTER_FIELDS if name in self.cleaned_data}
        raw = {name: value for name, value in raw.items() if value}
        return JobFilter(
            q=q,
            kinds=[data["kind"]] if "kind" in data else None,
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
    #: the valid filters as a query string ("status=failed&kind=email"), for links
    query: str = ""
    errors: list = field(default_factory=list)

    @property
    def active(self):
        return bool(self.q) or self.kinds is not None
