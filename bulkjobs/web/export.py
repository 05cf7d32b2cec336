"""A job's items as CSV (/background-jobs/<kind>/<id>/items.csv): every item or those of
one status, streamed in chunks however many there are, in the reader's language, with
spreadsheet formulas in user-supplied text neutralised. Platform operators may export
any company's job (a read, like its page).
"""

import csv
from types import SimpleNamespace

from django.http import StreamingHttpResponse
from django.utils import timezone, translation
from django.utils.text import capfirst
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from cards.tenancy import member_or_operator_required

from .. import reasons
from ..models import Status
from .rows import visible_job_or_404


class _Echo:
    """A file-like object whose write() hands the line back, for streaming csv.writer output."""

    def write(self, value):
        return value


def _csv_cell(value):
    """Neutralise spreadsheet formulas (CSV injection) in user-supplied text."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return "" if value is None else value


def _header_of(fields, header, attname):
    """A column's header: a foreign key (the card) is named by its field's translated
    verbose name, its values being the related rows' ids."""
    field = fields.get(attname)
    return str(field.verbose_name) if field is not None and field.is_relation else str(header)


#: The reason's columns, read with each item and rendered (bulkjobs.reasons).
_REASON_FIELDS = ("reason", "reason_code", "reason_params", "provider_reply")


@require_GET
@member_or_operator_required
def job_items_csv(request, kind, pk):
    """All items of a job (optionally one status) as CSV, streamed in chunks.

    Headers, statuses and reasons are in the reader's language, like the job page
    (operators read operator-only causes, company users plain words); times stay ISO
    8601 with their offset, for spreadsheets and scripts."""
    kind, job = visible_job_or_404(request, kind, pk)
    for_staff = request.user.is_staff
    fields = {f.attname: f for f in kind.item_model._meta.concrete_fields}
    columns = [
        (_("Item"), "id"),
        (_("Status"), "status"),
        (_("Reason"), "reason"),
        (_("Attempts"), "attempts"),
        (_("Processed"), "processed_at"),
    ] + [
        (capfirst(_header_of(fields, header, attname)), attname)
        for header, attname in kind.item_columns()
    ]
    items = kind.item_model.objects.filter(job_id=job.pk).order_by("id")
    status = request.GET.get("status", "")
    if status in Status.values:
        items = items.filter(status=status)
    attnames = [attname for _header, attname in columns]
    read = [*attnames, *_REASON_FIELDS[1:]]

    def cell(attname, value, row):
        if attname == "reason":
            return str(reasons.describe(SimpleNamespace(**row), for_staff=for_staff))
        field = fields.get(attname)
        if field is not None and field.choices and value:
            return str(dict(field.flatchoices).get(value, value))
        if attname.endswith("_detail") and value:
            return str(reasons.describe_text(value, for_staff=for_staff))
        return value

    # The lines are made while the response streams, after the view (and the
    # middleware's language and zone of the request) returned: keep them.
    language, zone = translation.get_language(), timezone.get_current_timezone()

    def lines():
        writer = csv.writer(_Echo())
        with translation.override(language), timezone.override(zone):
            yield writer.writerow([str(header) for header, _attname in columns])
            for values in items.values_list(*read).iterator(chunk_size=2000):
                row = dict(zip(read, values, strict=True))
                yield writer.writerow([_csv_cell(cell(a, row[a], row)) for a in attnames])

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    suffix = f"-{status}" if status in Status.values else ""
    response["Content-Disposition"] = (
        f'attachment; filename="{kind.name}-job-{job.pk}-items{suffix}.csv"'
    )
    return response
