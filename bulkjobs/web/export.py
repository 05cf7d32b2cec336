"""A job's items as CSV (/background-jobs/<kind>/<id>/items.csv): every item or those of
one status, streamed in chunks however many there are, with spreadsheet formulas in
user-supplied text neutralised. Platform operators may export any company's job (a read,
like its page).
"""

import csv

from django.http import StreamingHttpResponse
from django.views.decorators.http import require_GET

from cards.tenancy import member_or_operator_required

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


@require_GET
@member_or_operator_required
def job_items_csv(request, kind, pk):
    """All items of a job (optionally one status) as CSV, streamed in chunks."""
    kind, job = visible_job_or_404(request, kind, pk)
    columns = [
        ("id", "id"),
        ("status", "status"),
        ("reason", "reason"),
        ("attempts", "attempts"),
        ("processed_at", "processed_at"),
    ] + [(header.replace(" ", "_"), attname) for header, attname in kind.item_columns()]
    items = kind.item_model.objects.filter(job_id=job.pk).order_by("id")
    status = request.GET.get("status", "")
    if status in Status.values:
        items = items.filter(status=status)
    attnames = [attname for _header, attname in columns]

    def lines():
        writer = csv.writer(_Echo())
        yield writer.writerow([header for header, _attname in columns])
        for values in items.values_list(*attnames).iterator(chunk_size=2000):
            yield writer.writerow([_csv_cell(value) for value in values])

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    suffix = f"-{status}" if status in Status.values else ""
    response["Content-Disposition"] = (
        f'attachment; filename="{kind.name}-job-{job.pk}-items{suffix}.csv"'
    )
    return response
