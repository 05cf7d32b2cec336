"""The /background-jobs pages: the dashboard, the activity charts and the job page.

Every view is scoped to the signed-in user's company (cards.tenancy), except for
platform operators (staff): they get the overview of every company's jobs
(bulkjobs.web.overview; an operator who is also a member of a company sees it with
?view=all) and may read any company's job page, read-only (acting on another company's
job is for the Django admin). The dashboard and the job page poll a JSON twin of
themselves (ETag, 304 when nothing changed) while visible. A job's CSV export is
bulkjobs.web.export; cancel and retry are bulkjobs.web.actions.
"""

import hashlib
from urllib.parse import quote

from django.conf import settings
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import Count, Min, Q
from django.http import HttpResponseNotModified, JsonResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.cache import patch_cache_control
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET

from cards.locale import company_time_zone, format_zoned
from cards.tenancy import (
    OVERVIEW_PARAM,
    OVERVIEW_VALUE,
    company_member_required,
    current_membership,
    is_operator,
    member_or_operator_required,
    membership_or_none,
    operator_overview,
)

from .. import reasons
from ..models import JobAction, Status
from ..models.sql import prefix_condition
from . import dashboard, eta, failures, overview, queue
from .filters import JobFilterForm
from .fingerprint import fingerprints
from .rows import can_retry, job_row, visible_job_or_404

ITEMS_PER_PAGE = 50
#: Entries of a job's history (JobAction) its page lists, newest first.
HISTORY = 20


def poll_seconds():
    """Seconds between dashboard polls: settings.BULKJOBS_DASHBOARD_POLL_SECONDS, default 10."""
    return getattr(settings, "BULKJOBS_DASHBOARD_POLL_SECONDS", 10)


def _page_numbers(request):
    return {
        dashboard.page_param(kind): request.GET.get(dashboard.page_param(kind))
        for kind in dashboard.ordered_kinds()
    }


def _is_operator(request):
    return is_operator(request)


def _viewer(request, membership, *extra):
    """What, besides the data, changes a poll's answer: role, operator, filters, page."""
    role = membership.role if membership is not None else ""
    return "|".join([role, str(_is_operator(request)), *[str(part) for part in extra]])


def _matches(request, etag):
    return etag in [tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")]


def _private(response, etag):
    response["ETag"] = etag
    # Private and always revalidated: the poll must see changes, and the data is a tenant's.
    patch_cache_control(response, private=True, no_cache=True)
    return response


def _filter_form(request, company):
    return JobFilterForm(request.GET, company=company, kinds=dashboard.ordered_kinds())


def _overview_query(request):
    """The query string that keeps an operator who is a member of a company on the
    overview ("view=all&"); nothing for one who sees nothing else anyway."""
    if membership_or_none(request) is None:
        return ""
    return f"{OVERVIEW_PARAM}={OVERVIEW_VALUE}&"


def _kinds_json(request, sections, context):
    """The "kinds" of a dashboard poll: each section's page, health and rendered rows."""
    return [
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
                        "bulkjobs/_job_row.html", dict(context, row=row), request=request
                    ),
                )
                for row in s.rows
            ],
        }
        for s in sections
    ]


def _overview_context(request, form, job_filter, now, snap, runs):
    page_numbers = _page_numbers(request)
    company = job_filter.company
    company_id = company.pk if company is not None else None
    sections = overview.sections(page_numbers, now, snap, runs, job_filter, company_id)
    membership = membership_or_none(request)
    keep = _overview_query(request)
    return {
        "overview": True,
        "sections": sections,
        "queue_health": overview.queue_health(dashboard.ordered_kinds(), now, company_id),
        "now": now,
        "zone_name": timezone.get_current_timezone_name(),
        "membership": membership,
        # Read-only: acting on a company's jobs is for its admins, or the Django admin.
        "is_admin": False,
        "filter_form": form,
        "job_filter": job_filter,
        "overview_query": keep,
        "filter_query": f"{keep}{job_filter.query}&" if job_filter.query else keep,
        "poll_seconds": poll_seconds(),
        "poll_ms": int(poll_seconds() * 1000),
    }


def _overview_page(request):
    """The operators' overview: every company's jobs, or one company's (the filter)."""
    form = _filter_form(request, None)
    job_filter = form.job_filter()
    company_id = job_filter.company.pk if job_filter.company else None
    now = timezone.now()
    snap = overview.snapshot(dashboard.ordered_kinds(), company_id)
    context = _overview_context(request, form, job_filter, now, snap, eta.processor_runs())
    return render(
        request,
        "bulkjobs/dashboard.html",
        context,
        status=400 if job_filter.errors else 200,
    )


def _overview_json(request):
    """The overview's poll: 304 after two queries (the snapshot) when nothing changed."""
    form = _filter_form(request, None)
    job_filter = form.job_filter()
    if job_filter.errors:
        return JsonResponse({"errors": job_filter.errors}, status=400)
    company_id = job_filter.company.pk if job_filter.company else None
    now = timezone.now()
    runs = eta.processor_runs()
    snap = overview.snapshot(dashboard.ordered_kinds(), company_id)
    # An operator in no company reads in the browser's language and the server's zone,
    # which may differ from one poll to the next; a company's pages have fixed ones.
    viewer = _viewer(
        request,
        membership_or_none(request),
        "overview",
        translation.get_language(),
        timezone.get_current_timezone_name(),
        job_filter.query,
    )
    etag = overview.etag_for(viewer, _page_numbers(request), snap, runs, now)
    if _matches(request, etag):
        return _private(HttpResponseNotModified(), etag)
    context = _overview_context(request, form, job_filter, now, snap, runs)
    response = JsonResponse(
        {
            "generated_at": now.isoformat(),
            "kinds": _kinds_json(request, context["sections"], context),
            "queue_health": {
                "html": render_to_string("bulkjobs/_queue_health.html", context, request=request),
            },
        }
    )
    return _private(response, etag)


@require_GET
@member_or_operator_required
def dashboard_view(request):
    if operator_overview(request):
        return _overview_page(request)
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
            # Operator-only causes in plain words, once for the page, not once per row.
            "notices": reasons.notices(
                [reasons.Rendered.make("", row["notice"]) for s in sections for row in s.rows]
            ),
            "activities": dashboard.activity_summary(membership.company, sections=sections),
            "membership": membership,
            "is_admin": membership.is_admin,
            "filter_form": form,
            "job_filter": job_filter,
            # Kept by the page links, so paging through filtered jobs keeps the filters.
            "filter_query": f"{job_filter.query}&" if job_filter.query else "",
            "poll_seconds": poll_seconds(),
            "poll_ms": int(poll_seconds() * 1000),
            "overview_switch": _is_operator(request),
        },
        # Invalid filters are the request's fault: say so (the page shows which and why).
        status=400 if job_filter.errors else 200,
    )


@require_GET
@member_or_operator_required
def jobs_json(request):
    """The dashboard's rows as JSON for the 10-second poll; 304 when nothing changed.

    The ETag comes from one aggregate query per kind, so an unchanged dashboard costs
    no page queries and no rendering.
    """
    if operator_overview(request):
        return _overview_json(request)
    membership = current_membership(request)
    company = membership.company
    page_numbers = _page_numbers(request)
    job_filter = _filter_form(request, company).job_filter()
    if job_filter.errors:
        return JsonResponse({"errors": job_filter.errors}, status=400)
    now = timezone.now()
    runs = eta.processor_runs()
    prints = fingerprints(company, dashboard.ordered_kinds())
    # Today's tiles start again at the company's midnight, whatever the jobs do.
    today = timezone.localdate(now, company_time_zone(company))
    viewer = _viewer(request, membership, job_filter.query, today)
    etag = dashboard.etag_for(viewer, page_numbers, prints, runs, now)
    if _matches(request, etag):
        return _private(HttpResponseNotModified(), etag)
    sections = dashboard.sections(
        company, page_numbers, now, prints, runs, job_filter, _is_operator(request)
    )
    context = {"is_admin": membership.is_admin}
    # The "Today" tiles move with the jobs' counters, which the fingerprints cover.
    activities = dashboard.activity_summary(company, now, sections=sections)
    response = JsonResponse(
        {
            "generated_at": now.isoformat(),
            "kinds": _kinds_json(request, sections, context),
            "activity": {
                "html": render_to_string(
                    "bulkjobs/_activity_summary.html", {"activities": activities}, request=request
                )
            },
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
            "poll_ms": int(poll_seconds() * 1000),
        },
    )


#: The longest search text read; an address is at most 254 characters.
SEARCH_MAX = 254
#: Search results are counted up to this many (see _job_page).
SEARCH_COUNTED = 1000


def search_text(request):
    """The job page's search box (?q=), trimmed; "" when empty."""
    return request.GET.get("q", "").strip()[:SEARCH_MAX]


def search_condition(kind, text):
    """A Q on a job's items: one of the kind's search_fields starts with `text`, case
    folded (through their prefix indexes, bulkjobs.models.sql), or "#12" / "12" is the
    item's number."""
    vendor = connection.vendor
    q = Q()
    for path in kind.search_fields:
        q |= prefix_condition(vendor, path, text)
    number = text.removeprefix("#")
    if number.isdigit() and len(number) < 19:
        q |= Q(pk=int(number))
    return q


def _search_page(items, number):
    """The requested page of a search's items (a Page), in two queries through the
    prefix indexes: the matching ids (at most SEARCH_COUNTED + 1: "kunde" may match most
    of a 100,000-item job, and the page then says "more than" and asks for more of the
    text), then that page's rows. Unordered, the first query reads the indexes; with
    ORDER BY id LIMIT 50, PostgreSQL would rather walk the primary key hoping to meet 50
    matches early, which for a rare name means reading most of the table."""
    ids = sorted(items.order_by().values_list("pk", flat=True)[: SEARCH_COUNTED + 1])
    page = Paginator(ids, ITEMS_PER_PAGE).get_page(number)
    page.object_list = list(items.filter(pk__in=list(page.object_list)).order_by("id"))
    return page


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


def _item_value(item, attname, related, for_staff=False):
    """What an item's column shows: a choice's label (translated), a detail in the
    reader's words (bulkjobs.reasons), a related row's name, or the value."""
    if related is not None:
        obj = getattr(item, related)
        return str(obj) if obj is not None else None
    field = item._meta.get_field(attname)
    if field.choices:
        return getattr(item, f"get_{field.name}_display")() if getattr(item, attname) else None
    value = getattr(item, attname)
    if attname.endswith("_detail") and value:
        # A wallet platform's detail: English the engine wrote, mapped to its code.
        return reasons.describe_text(value, for_staff=for_staff)
    return value


def item_row(item, columns, for_staff=False):
    """One item of a job page's table: its column values and its reason, in the reader's
    words (each a reasons.Rendered where it is one; their notices go to the page)."""
    return {
        "item": item,
        "values": [
            _item_value(item, attname, name, for_staff) for _header, attname, name in columns
        ],
        "reason": reasons.describe(item, for_staff=for_staff),
        "attempts": [
            dict(entry, reason=reasons.describe_text(entry["reason"], for_staff=for_staff))
            for entry in item.attempt_history
        ],
    }


def _filled(value):
    return value is not None and str(value) != ""


def page_cells(kind, columns, rows):
    """The job page's columns: each kind's folded detail (kind.folded_columns) shown
    under its column's value, and columns empty in every row of the page left out (a
    wallet page of cards never deleted has no "pass of the deleted card" column). Sets
    each row's "cells" ({"header", "value", "details"}) and returns the headers."""
    folded = kind.folded_columns
    attnames = [attname for _header, attname, _name in columns]
    shown = [
        (index, header, [n for n, name in enumerate(attnames) if folded.get(name) == attname])
        for index, (header, attname, _name) in enumerate(columns)
        if attname not in folded
    ]
    for row in rows:
        values = row["values"]
        row["cells"] = [
            {
                "header": str(header),
                "value": values[index],
                "details": [values[n] for n in details if _filled(values[n])],
            }
            for index, header, details in shown
        ]
    visible = [
        n
        for n in range(len(shown))
        if any(_filled(row["cells"][n]["value"]) or row["cells"][n]["details"] for row in rows)
    ]
    for row in rows:
        row["cells"] = [row["cells"][n] for n in visible]
    return [str(shown[n][1]) for n in visible]


def item_table(kind, items, limit):
    """(headers, rows) of the first `limit` of `items` (a queryset), in the job page's
    columns; their related rows joined in (select_related)."""
    columns = _item_columns(kind)
    related = [name for _header, _attname, name in columns if name]
    rows = [
        item_row(item, columns) for item in items.select_related(*related).order_by("id")[:limit]
    ]
    return [header for header, _attname, _name in columns], rows


def _job_page(request, kind, job, membership):
    """The job page's context: the row, the item counts per status and one page of items.

    `membership` is the viewer's (None for an operator in no company): only an admin of
    the job's own company is offered its actions; an operator reading another company's
    job gets the page read-only, with its company and links to the admin.

    A fixed number of queries: the counts (one GROUP BY, which also counts the failed
    items whose delivery is unknown), the page with its cards (select_related), the
    paginator's count, and the job's history (who cancelled, paused, resumed, retried)
    if it has any.
    """
    columns = _item_columns(kind)
    related = [name for _header, _attname, name in columns if name]
    items = kind.item_model.objects.filter(job_id=job.pk).select_related(*related).order_by("id")
    status = request.GET.get("status", "")
    if status and status not in Status.values:
        status = ""
    if status:
        items = items.filter(status=status)
    query = search_text(request)
    if query:
        items = items.filter(search_condition(kind, query))
    now = timezone.now()
    # Items waiting for their retry, and the earliest: in the same GROUP BY.
    later = Q(next_attempt_at__gt=now)
    # order_by() drops the model's default ordering, which would otherwise join the GROUP BY.
    per_status = list(
        kind.item_model.objects.filter(job_id=job.pk)
        .order_by()
        .values("status")
        .annotate(
            n=Count("id"),
            to_retry=Count("id", filter=later),
            next_retry=Min("next_attempt_at", filter=later),
        )
    )
    counts = {row["status"]: row["n"] for row in per_status}
    # The failed items by cause, and what Retry would queue: those whose delivery is
    # unknown have an action of their own, with a confirmation (actions.retry_unknown),
    # and suppressed addresses are never queued again (bulkjobs.web.failures).
    failed = failures.failures(kind, job)
    unknown_count = failed.unknown if can_retry(job) else 0
    if query:
        page = _search_page(items, request.GET.get("page"))
    else:
        paginator = Paginator(items, ITEMS_PER_PAGE)
        # The counts were just read: spare the paginator its own COUNT.
        paginator.count = counts.get(status, 0) if status else sum(counts.values())
        page = paginator.get_page(request.GET.get("page"))
    for_staff = _is_operator(request)
    rows = [item_row(item, columns, for_staff) for item in page.object_list]
    row = job_row(kind, job, now, for_staff=for_staff)
    shown = [reasons.Rendered.make("", row["notice"])]
    for item_shown in rows:
        shown += [item_shown["reason"], *item_shown["values"]]
    filters = [("", _("All"), sum(counts.values()))] + [
        (value, label, counts.get(value, 0))
        for value, label in Status.choices
        # Only a job is paused, never an item.
        if value != Status.PAUSED
    ]
    own = membership is not None and membership.company_id == job.company_id
    if _is_operator(request) and not own:
        row["company"] = {
            "name": job.company.name,
            "admin_url": overview.company_admin_url(job.company_id),
        }
        row["urls"]["admin"] = overview.admin_url(job)
    # The row's annotation (rows.with_last_action) tells whether there is any history.
    actions = JobAction.objects.for_job(kind.name, job.pk)[:HISTORY]
    history = [a.describe(now) for a in actions] if getattr(job, "last_action", None) else []
    return {
        "kind": kind,
        "job": job,
        "row": row,
        "history": history,
        "notices": reasons.notices(shown),
        "is_admin": own and membership.is_admin,
        "unknown_count": unknown_count,
        "retry_count": failed.retryable if can_retry(job) else 0,
        "retries_waiting": _retries_waiting(per_status, now),
        "failures": failed,
        "query": query,
        "search_capped": bool(query) and page.paginator.count > SEARCH_COUNTED,
        # Kept by the item page links: the status filter and the search.
        "item_query": f"status={status}&" + (f"q={quote(query)}&" if query else ""),
        "columns": page_cells(kind, columns, rows),
        "rows": rows,
        "page": page,
        "status": status,
        "filters": filters,
        "poll_ms": int(poll_seconds() * 1000),
    }


@require_GET
@member_or_operator_required
def job_detail(request, kind, pk):
    kind, job = visible_job_or_404(request, kind, pk)
    context = _job_page(request, kind, job, membership_or_none(request))
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
        job.reason_code,
        job.reason_params,
        job.total_items,
        job.succeeded_items,
        job.failed_items,
        job.cancelled_items,
        job.started_at,
        job.finished_at,
        job.last_processed_at,
        job.claimed_at,
        job.paused_at,
        # A pause and a resume between two polls leave the status as it was.
        getattr(job, "last_action_at", None),
    )
    digest = hashlib.sha256(repr((viewer, fields, queue_print)).encode()).hexdigest()[:32]
    return f'"{digest}"'


def _retries_waiting(per_status, now):
    """ "3 to retry, next at 14:05 CET": the job's items waiting for their retry (a mail
    server's greylist, a full mailbox), in the reader's zone; "" when none."""
    pending = next((row for row in per_status if row["status"] == Status.PENDING), None)
    if pending is None or not pending["to_retry"]:
        return ""
    count, at = pending["to_retry"], pending["next_retry"]
    with_date = timezone.localdate(now) != timezone.localtime(at).date()
    return ngettext(
        "%(count)s to retry, next at %(time)s", "%(count)s to retry, next at %(time)s", count
    ) % {
        "count": reasons.number(count),
        "time": format_zoned(at, "Y-m-d H:i" if with_date else "H:i"),
    }


@require_GET
@member_or_operator_required
def job_json(request, kind, pk):
    """The job page's poll: its refreshed parts as HTML plus the row; 304 when unchanged.

    An unchanged job costs the job's own row and no item queries.
    """
    kind, job = visible_job_or_404(request, kind, pk)
    membership = membership_or_none(request)
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
