"""The /background-jobs pages: dashboard, its JSON poll, job detail, CSV export, cancel, retry.

Every view is scoped to the signed-in user's company (bulkjobs.tenancy); cancel and
retry need the admin role and go through bulkjobs.services like every other caller.
"""

import csv

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import Http404, HttpResponseNotModified, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.cache import patch_cache_control
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import dashboard
from .kinds import get_kind
from .models import Status
from .services import cancel_job, retry_failed_items
from .tenancy import (
    company_member_required,
    current_membership,
    get_company_object_or_404,
    require_company_admin,
)

ITEMS_PER_PAGE = 50


def poll_seconds():
    """Seconds between dashboard polls: settings.BULKJOBS_DASHBOARD_POLL_SECONDS, default 10."""
    return getattr(settings, "BULKJOBS_DASHBOARD_POLL_SECONDS", 10)


def _kind_or_404(name):
    try:
        return get_kind(name)
    except LookupError:
        raise Http404(f"No job kind {name!r}.") from None


def _job_or_404(request, kind_name, pk):
    kind = _kind_or_404(kind_name)
    job = get_company_object_or_404(
        request, kind.job_model.objects.select_related("created_by"), pk=pk
    )
    return kind, job


def _page_numbers(request):
    return {
        dashboard.page_param(kind): request.GET.get(dashboard.page_param(kind))
        for kind in dashboard.ordered_kinds()
    }


def _wants_json(request):
    return "application/json" in request.headers.get("Accept", "")


def _back(request, fallback):
    """Where to go after an action: the page the form came from, if it is ours."""
    target = request.POST.get("next") or ""
    if url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return target
    return fallback


@require_GET
@company_member_required
def dashboard_view(request):
    membership = current_membership(request)
    sections = dashboard.sections(membership.company, _page_numbers(request))
    return render(
        request,
        "bulkjobs/dashboard.html",
        {
            "sections": sections,
            "activities": dashboard.activity_summary(membership.company, sections=sections),
            "membership": membership,
            "is_admin": membership.is_admin,
            "poll_seconds": poll_seconds(),
            "poll_ms": int(poll_seconds() * 1000),
        },
    )


@require_GET
@company_member_required
def jobs_json(request):
    """The dashboard's rows as JSON for the 10-second poll; 304 when nothing changed.

    The ETag comes from one aggregate query per kind, so an unchanged dashboard costs
    no page queries and no rendering.
    """
    membership = current_membership(request)
    company = membership.company
    page_numbers = _page_numbers(request)
    now = timezone.now()
    runs = dashboard.processor_runs()
    prints = dashboard.fingerprints(company)
    etag = dashboard.etag_for(membership.role, page_numbers, prints, runs, now)
    if etag in [tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")]:
        response = HttpResponseNotModified()
    else:
        sections = dashboard.sections(company, page_numbers, now, prints, runs)
        context = {"is_admin": membership.is_admin}
        response = JsonResponse(
            {
                "generated_at": now.isoformat(),
                "kinds": [
                    {
                        "name": s.kind.name,
                        "label": s.kind.label,
                        "page": s.page.number,
                        "num_pages": s.page.paginator.num_pages,
                        "count": s.page.paginator.count,
                        "health": s.health.as_dict(),
                        "jobs": [
                            dict(
                                row,
                                html=render_to_string(
                                    "bulkjobs/_job_row.html",
                                    dict(context, row=row),
                                    request=request,
                                ),
                            )
                            for row in s.rows
                        ],
                    }
                    for s in sections
                ],
            }
        )
    response["ETag"] = etag
    # Private and always revalidated: the poll must see changes, and the data is a tenant's.
    patch_cache_control(response, private=True, no_cache=True)
    return response


@require_GET
@company_member_required
def job_detail(request, kind, pk):
    kind, job = _job_or_404(request, kind, pk)
    membership = current_membership(request)
    items = kind.item_model.objects.filter(job_id=job.pk).order_by("id")
    status = request.GET.get("status", "")
    if status and status not in Status.values:
        status = ""
    if status:
        items = items.filter(status=status)
    # order_by() drops the model's default ordering, which would otherwise join the GROUP BY.
    counts = dict(
        kind.item_model.objects.filter(job_id=job.pk)
        .order_by()
        .values_list("status")
        .annotate(n=Count("id"))
    )
    page = Paginator(items, ITEMS_PER_PAGE).get_page(request.GET.get("page"))
    columns = kind.item_columns()
    rows = [
        {"item": item, "values": [getattr(item, attname) for _header, attname in columns]}
        for item in page.object_list
    ]
    filters = [("", "All", sum(counts.values()))] + [
        (value, label, counts.get(value, 0)) for value, label in Status.choices
    ]
    return render(
        request,
        "bulkjobs/job_detail.html",
        {
            "kind": kind,
            "job": job,
            "row": dashboard.job_row(kind, job, timezone.now()),
            "is_admin": membership.is_admin,
            "columns": [header for header, _attname in columns],
            "rows": rows,
            "page": page,
            "status": status,
            "filters": filters,
        },
    )


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
@company_member_required
def job_items_csv(request, kind, pk):
    """All items of a job (optionally one status) as CSV, streamed in chunks."""
    kind, job = _job_or_404(request, kind, pk)
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


@require_http_methods(["GET", "POST"])
@company_member_required
def cancel(request, kind, pk):
    """GET: the confirmation page. POST: cancel through bulkjobs.services.cancel_job."""
    kind, job = _job_or_404(request, kind, pk)
    require_company_admin(request)
    if request.method == "GET":
        return render(
            request,
            "bulkjobs/confirm_cancel.html",
            {"kind": kind, "job": job, "next": request.GET.get("next", "")},
        )
    cancelled = cancel_job(job, by=request.user.get_username(), reason="Cancelled by user")
    if cancelled is None:
        text = f"Job #{job.pk} is {job.get_status_display().lower()}; there was nothing to cancel."
        level = messages.WARNING
    else:
        text = f"Job #{job.pk} cancelled; {cancelled} unfinished item(s) will not be processed."
        level = messages.SUCCESS
    if _wants_json(request):
        return JsonResponse({"ok": cancelled is not None, "message": text, "status": job.status})
    messages.add_message(request, level, text)
    return redirect(_back(request, "bulkjobs:dashboard"))


@require_POST
@company_member_required
def retry(request, kind, pk):
    """Queue a finished job's failed items again through bulkjobs.services.retry_failed_items."""
    kind, job = _job_or_404(request, kind, pk)
    require_company_admin(request)
    try:
        result = retry_failed_items(job, by=request.user.get_username())
    except ValueError as exc:
        text, level, ok = str(exc), messages.ERROR, False
    else:
        ok, skipped = result.queued > 0, result.skipped_text()
        if ok:
            text, level = (
                f"Job #{job.pk}: {result.queued} failed item(s) queued again.",
                messages.SUCCESS,
            )
            text += f" {skipped}." if skipped else ""
        elif skipped:
            text, level = f"Job #{job.pk}: nothing queued again; {skipped}.", messages.WARNING
        else:
            text, level = f"Job #{job.pk} has no failed items to retry.", messages.WARNING
    if _wants_json(request):
        return JsonResponse({"ok": ok, "message": text, "status": job.status})
    messages.add_message(request, level, text)
    return redirect(_back(request, "bulkjobs:dashboard"))
