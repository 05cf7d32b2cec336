"""A job's items as CSV (/background-jobs/<kind>/<id>/items.csv): every item or those of
one status, streamed in chunks however many there are, in the reader's language, with
spreadsheet formulas in user-supplied text neutralised. Platform operators may export
any company's job (a read, like its page).

Two dialects: plain CSV (`,`, UTF-8), and `?format=excel-de` for spreadsheets set up for
German (Excel there splits on `;` and reads a file without a byte order mark as
Windows-1252): `;`-separated, with a UTF-8 BOM.
"""

import csv
import re
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


#: A formula's first character (OWASP's list) at the start of the text or of any part a
#: spreadsheet splitting on `,` or `;` would make of it (spaces before it included): a
#: name `Evil;=2+5` exported into a German spreadsheet becomes the cell `=2+5` otherwise.
_FORMULA_START = re.compile(r"(^|[,;])( *)(?=[=+\-@\t\r])")


def _csv_cell(value):
    """Text with every formula start neutralised by a `'` (CSV injection); times as ISO
    8601. Text cells are quoted by the writer (QUOTE_NONNUMERIC), numbers are not."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if value is None:
        return ""
    if isinstance(value, str):
        return _FORMULA_START.sub(r"\1\2'", value)
    return value


#: The `format` parameter's dialects: delimiter, byte order mark, file name suffix.
FORMATS = {
    "": (",", "", ""),
    "excel-de": (";", "\ufeff", "-excel-de"),
}


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

    delimiter, bom, format_suffix = FORMATS.get(request.GET.get("format", ""), FORMATS[""])

    def lines():
        # Every text cell quoted, so a delimiter or line break inside one never splits it.
        writer = csv.writer(_Echo(), delimiter=delimiter, quoting=csv.QUOTE_NONNUMERIC)
        with translation.override(language), timezone.override(zone):
            yield bom + writer.writerow([str(header) for header, _attname in columns])
            for values in items.values_list(*read).iterator(chunk_size=2000):
                row = dict(zip(read, values, strict=True))
                yield writer.writerow([_csv_cell(cell(a, row[a], row)) for a in attnames])

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    suffix = (f"-{status}" if status in Status.values else "") + format_suffix
    response["Content-Disposition"] = (
        f'attachment; filename="{kind.name}-job-{job.pk}-items{suffix}.csv"'
    )
    return response
