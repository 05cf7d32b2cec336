"""What the /background-jobs dashboard shows, computed once for the HTML page and the JSON
poll: per kind, a section with a page of its jobs' rows (bulkjobs.web.rows), its
processor's health line and its change fingerprint (bulkjobs.web.fingerprint); and the
poll's ETag over them.

Kept apart from the views so both renderings (and the benchmark) share one definition.
"""

import hashlib
from dataclasses import dataclass
from datetime import timedelta

from django.core.paginator import Paginator
from django.utils import timezone
from django.utils.translation import gettext as _

from cards.locale import format_zoned

from ..engine.clock import SKEW_WARNING_SECONDS
from ..kinds import all_kinds
from . import charts, eta, failures, queue
from .fingerprint import fingerprints
from .rows import can_retry, job_row, with_last_action, with_titles

JOBS_PER_PAGE = 20
#: A processor that has not started a run for this long is reported as overdue; cron
#: runs it every minute, so five minutes means several runs were missed.
OVERDUE_AFTER = timedelta(minutes=5)


def ordered_kinds():
    """Job kinds in dashboard order: wallet sync first, then the rest by name."""
    return sorted(all_kinds(), key=lambda kind: (kind.name != "wallet", kind.name))


def page_param(kind):
    return f"{kind.name}-page"


def activity_summary(company, now=None, sections=None):
    """Each kind's activity (bulkjobs.web.charts.KindActivity): summary numbers and charts.
    Items queued now come from the fingerprints (the sections' if given)."""
    if sections is None:
        prints = fingerprints(company, ordered_kinds())
    else:
        prints = {section.kind.name: section.fingerprint for section in sections}
    queued = {name: max(0, (p["total"] or 0) - (p["processed"] or 0)) for name, p in prints.items()}
    return charts.activity(company, ordered_kinds(), queued, now)


@dataclass
class Health:
    kind_name: str
    command: str
    #: the kind's jobs in a sentence ("email jobs"), for company users
    jobs: str
    last_run_at: object
    overdue: bool
    #: platform operators (staff) get the technical hint; company users plain words
    operator: bool = False
    #: seconds the last run's host clock was behind the database's (negative: ahead)
    clock_skew: float = 0.0

    @property
    def message(self):
        if self.overdue and self.operator:
            return _(
                "No %(kind)s run in the last 5 minutes — is cron set up? "
                "See crontab.example (%(command)s)."
            ) % {"kind": self.kind_name, "command": self.command}
        if self.overdue:
            return _(
                "Background processing of %(jobs)s has not run for a while, so they wait. "
                "The platform operators look after this; tell them if it lasts."
            ) % {"jobs": self.jobs}
        # In the company's zone (the active one), named.
        message = _("Last %(kind)s run: %(time)s.") % {
            "kind": self.kind_name,
            "time": format_zoned(self.last_run_at, "Y-m-d H:i:s"),
        }
        if self.operator and abs(self.clock_skew) > SKEW_WARNING_SECONDS:
            # Operators only: the engine goes by the database's clock, so it is the
            # host's to fix, not a company's worry.
            message += " " + _(
                "Its host's clock is %(minutes)d min off the database's: set the host's time (NTP)."
            ) % {"minutes": round(abs(self.clock_skew) / 60)}
        return message

    def as_dict(self):
        return {
            "last_run_at": self.last_run_at,
            "overdue": self.overdue,
            "message": self.message,
        }


def health(kind, runs, now, operator=False):
    run = runs.get(kind.name)
    last = run.last_started_at if run else None
    return Health(
        kind_name=kind.name,
        command=kind.command,
        jobs=kind.label_in_sentence,
        last_run_at=last,
        overdue=last is None or now - last > OVERDUE_AFTER,
        operator=operator,
        clock_skew=run.clock_skew_seconds if run else 0.0,
    )


@dataclass
class Section:
    kind: object
    page: object
    rows: list
    health: Health
    fingerprint: dict

    @property
    def page_param(self):
        return page_param(self.kind)


def sections(
    company, page_numbers, now=None, prints=None, runs=None, job_filter=None, operator=False
):
    """One Section per kind: the requested page of the company's jobs, newest first.

    Query count is fixed per kind (fingerprint + one page query) plus one for the
    processor runs, however many jobs there are: the fingerprint's count feeds the
    paginator, and created_by comes with the page through a join. Pass the
    fingerprints and runs if they were already read for the ETag. A `job_filter`
    (bulkjobs.web.filters) narrows the jobs and kinds; its count is then the paginator's own.
    """
    now = now or timezone.now()
    runs = eta.processor_runs() if runs is None else runs
    prints = fingerprints(company, ordered_kinds()) if prints is None else prints
    pages = {}
    for kind in ordered_kinds():
        if job_filter and job_filter.kinds is not None and kind.name not in job_filter.kinds:
            continue
        jobs = with_last_action(
            kind,
            with_titles(
                kind,
                kind.job_model.objects.filter(company=company)
                .select_related("created_by")
                .order_by("-created_at", "-id"),
            ),
        )
        paginator = Paginator(jobs, JOBS_PER_PAGE)
        if job_filter and job_filter.q:
            paginator = Paginator(jobs.filter(job_filter.q), JOBS_PER_PAGE)
        else:
            # The fingerprint already counted the jobs; spare the paginator its own COUNT.
            paginator.count = prints[kind.name]["count"]
        pages[kind] = paginator.get_page(page_numbers.get(page_param(kind)))
    # The schedule behind "time left", and the queue behind what waiting jobs wait for,
    # are read only for kinds with an active job shown.
    active = [k for k, page in pages.items() if any(j.is_active for j in page)]
    plans = eta.schedules(company, runs, now, active)
    queues = {
        kind.name: queue.load(kind, company.pk, now, plans[kind.name], runs.get(kind.name))
        for kind in active
    }
    result = []
    for kind, page in pages.items():
        rows = [
            job_row(kind, job, now, plans.get(kind.name), queues.get(kind.name), for_staff=operator)
            for job in page.object_list
        ]
        # What each row's Retry would queue: one query for the page's retryable jobs.
        retryable = failures.retryable_counts(kind, [j for j in page.object_list if can_retry(j)])
        for row in rows:
            row["retryable"] = retryable.get(row["id"], 0)
        result.append(
            Section(kind, page, rows, health(kind, runs, now, operator), prints[kind.name])
        )
    return result


def etag_for(role, page_numbers, prints, runs, now):
    """ETag of the JSON poll: the fingerprints, processor health, pages and the viewer's role.

    A matching ETag means the client's rows are current and the page queries are
    skipped (304). The estimated time left is only recomputed when progress moves.
    """
    parts = [role]
    for kind in ordered_kinds():
        h = health(kind, runs, now)
        parts.append(repr((kind.name, page_numbers.get(page_param(kind)), prints[kind.name])))
        parts.append(repr((h.last_run_at, h.overdue)))
    digest = hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]
    return f'"{digest}"'
