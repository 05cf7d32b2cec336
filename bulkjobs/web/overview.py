"""The platform operators' /background-jobs/: every company's jobs on one page.

What it adds to a company's dashboard (bulkjobs.web.dashboard): a company on every row
(with links to the job and the company in the Django admin), a company filter, and the
queue health of each company with active jobs: how many jobs are active, since when the
oldest one waits to start, how many are paused by their provider, and when one last made
progress.

It stays as cheap as a company's dashboard however many companies there are:
- the poll's change fingerprint is two queries: the JobCount rows summed per kind, and
  one aggregate of every company's active jobs per kind (UNION ALL, through the
  active-jobs index; not grouped by company, so its size and the ETag's cost do not grow
  with the companies): an unchanged overview answers 304 after them;
- a changed answer adds the same aggregate grouped by company (the queue health), the
  companies' names, one page per kind with its rows' company and creator
  (select_related), and the time left of the running jobs shown from one read of their
  companies' hourly activity. The health table lists the QUEUE_HEALTH_LIMIT companies
  most in need of a look and counts the others, so rendering it stays bounded too.
All jobs are listed newest first by id (the primary key's order: no sort of every
company's history); filtered to one company, by creation time as a company sees them.
"""

import hashlib
from dataclasses import dataclass
from datetime import timedelta

from django.core.paginator import Paginator
from django.db.models import Count, Max, Min, Q, Sum, Value
from django.urls import reverse

from cards.models import Company

from ..models import ACTIVE_STATUSES, ActivityHour, JobCount, Status
from . import eta
from .dashboard import JOBS_PER_PAGE, Section, health, ordered_kinds, page_param
from .fingerprint import ACTIVE_AGGREGATES
from .jobcounts import job_counts
from .rows import format_duration, job_row, with_last_action, with_titles

#: Companies the queue health table lists (those waiting longest, then paused); the
#: others are counted, and the company filter shows any of them.
QUEUE_HEALTH_LIMIT = 50

_PENDING = Q(status=Status.PENDING)
_PAUSED = Q(status=Status.PROCESSING, paused_at__isnull=False)

#: Per kind over every company's active jobs: what the poll's ETag hashes. The company
#: fingerprint's aggregates, and what else the queue health shows. Sums of ids see a job
#: enter or leave a set even when the counts stay the same; sums of counters see any
#: company's progress even when another company holds the latest time.
TOTAL_AGGREGATES = {
    **ACTIVE_AGGREGATES,
    "pending": Count("id", filter=_PENDING),
    "pending_ids": Sum("id", filter=_PENDING),
    "paused_jobs": Count("id", filter=_PAUSED),
    "paused_ids": Sum("id", filter=_PAUSED),
}

#: Per company and kind, over its active jobs: its line of the queue health.
HEALTH_AGGREGATES = {
    "active": Count("id"),
    "pending": Count("id", filter=_PENDING),
    "waiting_since": Min("created_at", filter=_PENDING),
    "paused_jobs": Count("id", filter=_PAUSED),
    "last_processed": Max("last_processed_at"),
}


def admin_url(obj):
    """The object's change page in the Django admin."""
    meta = obj._meta
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])


def company_admin_url(company_id):
    return reverse("admin:cards_company_change", args=[company_id])


def _union(queries):
    if not queries:
        return []
    first, *others = queries
    return list(first.union(*others, all=True)) if others else list(first)


def _active_jobs(kind, company_id):
    jobs = kind.job_model.objects.filter(status__in=ACTIVE_STATUSES)
    if company_id is not None:
        jobs = jobs.filter(company_id=company_id)
    return jobs.order_by()


def active_totals(kinds, company_id=None):
    """{kind name: TOTAL_AGGREGATES} over every company's active jobs (or one company's):
    one query, an aggregate per kind (not grouped) joined by UNION ALL."""
    rows = _union(
        [
            # Grouped by the kind's name, a constant: one row per kind.
            _active_jobs(kind, company_id)
            .annotate(kind=Value(kind.name))
            .values("kind")
            .annotate(**TOTAL_AGGREGATES)
            for kind in kinds
        ]
    )
    found = {row["kind"]: row for row in rows}
    return {
        kind.name: {name: found.get(kind.name, {}).get(name) for name in TOTAL_AGGREGATES}
        for kind in kinds
    }


def active_by_company(kinds, company_id=None):
    """[{company_id, kind, **HEALTH_AGGREGATES}] of every company with active jobs (or of
    one company): one query, a grouped aggregate per kind joined by UNION ALL."""
    return _union(
        [
            _active_jobs(kind, company_id)
            .values("company_id")
            .annotate(kind=Value(kind.name), **HEALTH_AGGREGATES)
            for kind in kinds
        ]
    )


def total_job_counts(kinds, company_id=None):
    """{kind name: (jobs, version)} over every company (one query: the JobCount rows
    summed per kind), or of one company (its rows, filled in if missing).

    A company's row is made with its first job, or its dashboard's first poll; one whose
    jobs all predate the JobCount table and that nobody looked at since has none, so its
    jobs are listed but not counted in the page count until then (recount_jobs())."""
    if company_id is not None:
        rows = job_counts(company_id, kinds)
        return {kind.name: (rows[kind.name].jobs, rows[kind.name].version) for kind in kinds}
    sums = {
        row["kind"]: (row["jobs"] or 0, row["version"] or 0)
        for row in JobCount.objects.order_by()
        .values("kind")
        .annotate(jobs=Sum("jobs"), version=Sum("version"))
    }
    return {kind.name: sums.get(kind.name, (0, 0)) for kind in kinds}


@dataclass
class Snapshot:
    """What the overview's ETag comes from, read in two queries: the job counts and the
    active jobs' totals, per kind."""

    counts: dict
    totals: dict

    def fingerprint(self, kind_name):
        """The Section's fingerprint: jobs counted by JobCount, active ones aggregated."""
        jobs, version = self.counts[kind_name]
        return {"count": max(0, jobs), "version": version, **self.totals[kind_name]}

    @property
    def waiting(self):
        """Whether some company has a job waiting to start (its age moves by itself)."""
        return any(totals["pending"] for totals in self.totals.values())


def snapshot(kinds, company_id=None):
    return Snapshot(total_job_counts(kinds, company_id), active_totals(kinds, company_id))


def etag_for(viewer, page_numbers, snap, runs, now):
    """ETag of the overview's poll: the job counts and active totals of every kind, the
    processor health, pages and the viewer. While a job waits to start, the minute too:
    the health table says for how long it has waited."""
    parts = [viewer]
    for kind in ordered_kinds():
        h = health(kind, runs, now)
        fingerprint = sorted(snap.fingerprint(kind.name).items())
        parts.append(repr((kind.name, page_numbers.get(page_param(kind)), fingerprint)))
        parts.append(repr((h.last_run_at, h.overdue)))
    if snap.waiting:
        parts.append(now.strftime("%Y-%m-%d %H:%M"))
    digest = hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]
    return f'"{digest}"'


@dataclass
class CompanyHealth:
    """One company's queue, over every kind of job."""

    company_id: int
    name: str
    time_zone: str
    active: int = 0
    pending: int = 0
    paused: int = 0
    waiting_since: object = None
    last_progress: object = None
    #: how long the oldest job waiting to start has waited ("about 5 min")
    waited_text: str = ""

    @property
    def admin_url(self):
        return company_admin_url(self.company_id)


def _latest(a, b):
    return b if a is None or (b is not None and b > a) else a


def _earliest(a, b):
    return b if a is None or (b is not None and b < a) else a


@dataclass
class QueueHealth:
    """The queue health table: its companies, and how many more have active jobs."""

    companies: list
    more: int = 0


def queue_health(kinds, now, company_id=None):
    """The companies with active jobs (or the one company) most in need of a look: those
    whose oldest job has waited longest first, then those with the most paused jobs, then
    the oldest companies; two queries (the grouped aggregate, the companies listed)."""
    by_company = {}
    for row in active_by_company(kinds, company_id):
        entry = by_company.setdefault(row["company_id"], {})
        entry["active"] = entry.get("active", 0) + row["active"]
        entry["pending"] = entry.get("pending", 0) + row["pending"]
        entry["paused"] = entry.get("paused", 0) + row["paused_jobs"]
        entry["waiting_since"] = _earliest(entry.get("waiting_since"), row["waiting_since"])
        entry["last_progress"] = _latest(entry.get("last_progress"), row["last_processed"])
    # Ordered without the companies' names, so only the companies listed are read.
    far_future = now + timedelta(days=36500)
    order = sorted(
        by_company,
        key=lambda pk: (
            by_company[pk]["waiting_since"] or far_future,
            -by_company[pk]["paused"],
            pk,
        ),
    )
    shown = order[:QUEUE_HEALTH_LIMIT]
    names = Company.objects.only("name", "time_zone").in_bulk(shown)
    companies = []
    for pk in shown:
        company = names.get(pk)
        if company is None:  # deleted since the aggregate was read
            continue
        entry = CompanyHealth(pk, company.name, company.time_zone, **by_company[pk])
        if entry.waiting_since is not None:
            entry.waited_text = format_duration(
                max(0.0, (now - entry.waiting_since).total_seconds())
            )
        companies.append(entry)
    return QueueHealth(companies, more=len(order) - len(shown))


def _schedules(jobs, runs, now):
    """{(company id, kind name): Schedule} for the running jobs among `jobs` [(kind, job)]:
    their companies' measured time per item from one read of the hourly activity."""
    running = [(kind, job) for kind, job in jobs if job.status == Status.PROCESSING]
    if not running:
        return {}
    since = now - timedelta(days=2)
    rows = {}
    for company_id, *row in (
        ActivityHour.objects.filter(
            company_id__in={job.company_id for _kind, job in running}, hour__gte=since
        )
        .order_by()
        .values_list(
            "company_id", "kind", "hour", "processed", "failed", "attempts", "busy_seconds"
        )
    ):
        rows.setdefault(company_id, []).append(row)
    result = {}
    for kind, job in running:
        run = runs.get(kind.name)
        result[job.company_id, kind.name] = eta.schedule_for(
            kind,
            run_interval=run.interval_seconds if run else None,
            companies=(run.companies_with_work if run else None) or 1,
            seconds_per_item=eta.seconds_per_item(rows.get(job.company_id, []), kind.name, now),
        )
    return result


def overview_row(kind, job, now, schedule):
    """A dashboard row (bulkjobs.web.rows.job_row) with its company and admin links."""
    # Each company's queue would cost queries per row: its queue health line says it.
    row = job_row(kind, job, now, schedule, company_queue=False, for_staff=True)
    row["company"] = {
        "id": job.company_id,
        "name": job.company.name,
        "time_zone": job.company.time_zone,
        "admin_url": company_admin_url(job.company_id),
    }
    row["urls"]["admin"] = admin_url(job)
    return row


def sections(page_numbers, now, snap, runs, job_filter, company_id=None):
    """One Section per kind: a page of every company's jobs (or one company's), newest
    first. A fixed number of queries: one page per kind (company and creator joined),
    and one for the time left of the running jobs shown."""
    pages = {}
    for kind in ordered_kinds():
        if job_filter.kinds is not None and kind.name not in job_filter.kinds:
            continue
        jobs = kind.job_model.objects.select_related("created_by", "company")
        if company_id is not None:
            jobs = jobs.filter(company_id=company_id).order_by("-created_at", "-id")
        else:
            jobs = jobs.order_by("-id")
        # Who last cancelled, paused, resumed or retried each job: subqueries, not a query
        # per row.
        jobs = with_last_action(kind, with_titles(kind, jobs))
        if job_filter.q:
            paginator = Paginator(jobs.filter(job_filter.q), JOBS_PER_PAGE)
        else:
            paginator = Paginator(jobs, JOBS_PER_PAGE)
            # The JobCount rows already counted them; spare the paginator a COUNT of
            # every company's history.
            paginator.count = snap.fingerprint(kind.name)["count"]
        pages[kind] = paginator.get_page(page_numbers.get(page_param(kind)))
    plans = _schedules(
        [(kind, job) for kind, page in pages.items() for job in page.object_list], runs, now
    )
    result = []
    for kind, page in pages.items():
        rows = [
            overview_row(kind, job, now, plans.get((job.company_id, kind.name)))
            for job in page.object_list
        ]
        section = Section(
            kind, page, rows, health(kind, runs, now, operator=True), snap.fingerprint(kind.name)
        )
        result.append(section)
    return result
