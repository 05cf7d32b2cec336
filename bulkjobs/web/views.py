"""The /background-jobs pages: the dashboard, the activity charts and the job page.

Every view is scoped to the signed-in user's company (cards.tenancy). The dashboard and
the job page poll a JSON twin of themselves (ETag, 304 when nothing changed) while
visible. A job's CSV export is bulkjobs.web.export; cancel and retry are
bulkjobs.web.actions.
"""

import hashlib

from django.conf import settings
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import HttpResponseNotModified, JsonResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.cache import patch_cache_control
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from cards.locale import company_time_zone
from cards.tenancy import company_member_required, current_membership

from ..models import Status
from . import dashboard, eta, queue
from .filters import JobFilterForm
from .fingerprint import fingerprints
from .rows import can_retry, job_or_404, job_row

ITEMS_PER_PAGE = 50


def poll_seconds():
    """Seconds between dashboard polls: settings.BULKJOBS_DASHBOARD_POLL_SECONDS, default 10."""
    return getattr(settings, "BULKJOBS_DASHBOARD_POLL_SECONDS", 10)


def _page_numbers(request):
    return {
        dashboard.page_param(kind): request.GET.get(dashboard.page_param(kind))
        for kind in dashboard.ordered_kinds()
    }


def _is_operator(request):
    return request.user.is_staff


def _viewer(request, membership, *extra):
    """What, besides the data, changes a poll's answer: role, operator, filters, page."""
    return "|".join([membership.role, str(_is_operator(request)), *[str(part) for part in extra]])


def _matches(request, etag):
    return etag in [tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")]


def _private(response, etag):
    response["ETag"] = etag
    # Private and always revalidated: the poll must see changes, and the data is a tenant's.
    patch_cache_control(response, private=True, no_cache=True)
    return response


def _filter_form(request, company):
    return JobFilterForm(request.GET, company=company, kinds=dashboard.ordered_kinds())


@require_GET
@company_member_required
def dashboard_view(request):
    membership = current_membership(request)
    form = _filter_form(request, membership.company)
    job_filter = form.job_filter()
    sections = dashboard.sections(
        membership.company,
        _page_numbers(request),
        job_filter=job_filter,
        operator=_is_operator(request),
    )
    return render(
        request,
        "bulkjobs/dashboard.html",
        {
            "sections": sections,
            "activities": dashboard.activity_summary(membership.company, sections=sections),
            "membership": membership,
            "is_admin": membership.is_admin,
            "filter_form": form,
            "job_filter": job_filter,
            # Kept by the page links, so paging through filtered jobs keeps the filters.
            "filter_query": f"{job_filter.query}&" if job_filter.query else "",
            "poll_seconds": poll_seconds(),
            "poll_ms": int(poll_seconds() * 1000),
        },
        # Invalid filters are the request's fault: say so (the page shows which and why).
        status=400 if job_filter.errors else 200,
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
    job_filter = _filter_form(request, company).job_filter()
    if job_filter.errors:
        return JsonResponse({"errors": job_filter.errors}, status=400)
    now = timezone.now()
    runs = eta.processor_runs()
    prints = fingerprints(company, dashboard.ordered_kinds())
    viewer = _viewer(request, membership, job_filter.query)
    etag = dashboard.etag_for(viewer, page_numbers, prints, runs, now)
    if _matches(request, etag):
        return _private(HttpResponseNotModified(), etag)
    sections = dashboard.sections(
        company, page_numbers, now, prints, runs, job_filter, _is_operator(request)
    )
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
    return _private(response, etag)


@require_GET
@company_member_required
def activity_page(request):
    """Charts and summary numbers of items processed and failed per hour and per day, for
    each job kind (bulkjobs.web.charts); a fixed number of queries however much history
    exists (the active jobs' aggregate per kind, then a month of ActivityHour rows)."""
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


def _item_columns(kind):
    """(header, attname, related name) of the kind's item columns. A foreign key (the
    card) shows the related object's name, loaded with the page by select_related."""
    fields = {f.attname: f for f in kind.item_model._meta.concrete_fields}
    columns = []
    for header, attname in kind.item_columns():
        field = fields.get(attname)
        if field is not None and field.is_relation:
            columns.append((str(field.verbose_name), attname, field.name))
        else:
            columns.append((header, attname, None))
    return columns


def _item_value(item, attname, related):
    if related is None:
        return getattr(item, attname)
    obj = getattr(item, related)
    return str(obj) if obj is not None else None


def item_table(kind, items, limit):
    """(headers, rows) of the first `limit` of `items` (a queryset), in the job page's
    columns; their related rows joined in (select_related)."""
    columns = _item_columns(kind)
    related = [name for _header, _attname, name in columns if name]
    rows = [
        {
            "item": item,
            "values": [_item_value(item, attname, name) for _header, attname, name in columns],
        }
        for item in items.select_related(*related).order_by("id")[:limit]
    ]
    return [header for header, _attname, _name in columns], rows


def _job_page(request, kind, job, membership):
    """The job page's context: the row, the item counts per status and one page of items.

    A fixed number of queries: the counts (one GROUP BY, which also counts the failed
    items whose delivery is unknown), the page with its cards (select_related) and the
    paginator's count.
    """
    columns = _item_columns(kind)
    related = [name for _header, _attname, name in columns if name]
    items = kind.item_model.objects.filter(job_id=job.pk).select_related(*related).order_by("id")
    status = request.GET.get("status", "")
    if status and status not in Status.values:
        status = ""
    if status:
        items = items.filter(status=status)
    is_unknown = kind.unknown_outcome()
    unknown = {} if is_unknown is None else {"unknown": Count("id", filter=is_unknown)}
    # order_by() drops the model's default ordering, which would otherwise join the GROUP BY.
    per_status = list(
        kind.item_model.objects.filter(job_id=job.pk)
        .order_by()
        .values("status")
        .annotate(n=Count("id"), **unknown)
    )
    counts = {row["status"]: row["n"] for row in per_status}
    # Failed items whose delivery is unknown: "Retry failed items" leaves them failed, and
    # they have an action of their own, with a confirmation (actions.retry_unknown).
    unknown_count = sum(
        row.get("unknown", 0) for row in per_status if row["status"] == Status.FAILED
    )
    if not can_retry(job):
        unknown_count = 0
    paginator = Paginator(items, ITEMS_PER_PAGE)
    # The counts were just read: spare the paginator its own COUNT.
    paginator.count = counts.get(status, 0) if status else sum(counts.values())
    page = paginator.get_page(request.GET.get("page"))
    rows = [
        {
            "item": item,
            "values": [_item_value(item, attname, name) for _header, attname, name in columns],
        }
        for item in page.object_list
    ]
    filters = [("", _("All"), sum(counts.values()))] + [
        (value, label, counts.get(value, 0)) for value, label in Status.choices
    ]
    return {
        "kind": kind,
        "job": job,
        "row": job_row(kind, job, timezone.now()),
        "is_admin": membership.is_admin,
        "unknown_count": unknown_count,
        "retry_count": max(0, job.failed_items - unknown_count),
        "columns": [header for header, _attname, _name in columns],
        "rows": rows,
        "page": page,
        "status": status,
        "filters": filters,
        "poll_ms": int(poll_seconds() * 1000),
    }


@require_GET
@company_member_required
def job_detail(request, kind, pk):
    kind, job = job_or_404(request, kind, pk)
    context = _job_page(request, kind, job, current_membership(request))
    return render(request, "bulkjobs/job_detail.html", context)


#: The job page's parts its poll refreshes: data-part name -> template.
JOB_PARTS = {
    "head": "bulkjobs/_job_head.html",
    "summary": "bulkjobs/_job_summary.html",
    "items": "bulkjobs/_job_items.html",
}


def job_etag(viewer, job, queue_print=None):
    """ETag of a job page's poll: every job field the page shows, who looks how, and for
    an active job the fingerprint of its company's active jobs of the kind (what it
    waits for moves with them: bulkjobs.web.queue)."""
    fields = (
        job.status,
        job.reason,
        job.total_items,
        job.succeeded_items,
        job.failed_items,
        job.cancelled_items,
        job.started_at,
        job.finished_at,
        job.last_processed_at,
        job.claimed_at,
        job.paused_at,
    )
    digest = hashlib.sha256(repr((viewer, fields, queue_print)).encode()).hexdigest()[:32]
    return f'"{digest}"'


@require_GET
@company_member_required
def job_json(request, kind, pk):
    """The job page's poll: its refreshed parts as HTML plus the row; 304 when unchanged.

    An unchanged job costs the job's own row and no item queries.
    """
    kind, job = job_or_404(request, kind, pk)
    membership = current_membership(request)
    # One query more for an active job: its place in the company's queue.
    queue_print = queue.fingerprint(kind, job.company_id) if job.is_active else None
    etag = job_etag(_viewer(request, membership, request.GET.urlencode()), job, queue_print)
    if _matches(request, etag):
        return _private(HttpResponseNotModified(), etag)
    context = _job_page(request, kind, job, membership)
    parts = {
        name: render_to_string(template, context, request=request)
        for name, template in JOB_PARTS.items()
    }
    return _private(JsonResponse({"job": context["row"], "parts": parts}), etag)
