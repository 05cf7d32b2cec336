"""What the /background-jobs pages show, computed once for the HTML page and the JSON poll.

Kept apart from the views so both renderings (and the benchmark) share one definition
of a row and a section, and the poll's ETag over the change fingerprint
(bulkjobs.web.fingerprint).
"""

import hashlib
from dataclasses import dataclass
from datetime import timedelta

from django.core.paginator import Paginator
from django.db.models import OuterRef, Subquery
from django.urls import reverse
from django.utils import timezone
from django.utils.text import capfirst
from django.utils.timezone import localtime
from django.utils.translation import gettext as _

from cards.locale import format_zoned

from ..kinds import all_kinds
from ..models import ProcessorRun, Status
from . import charts, eta
from .fingerprint import fingerprints

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


def processor_runs():
    return {run.kind: run for run in ProcessorRun.objects.all()}


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
        return _("Last %(kind)s run: %(time)s.") % {
            "kind": self.kind_name,
            "time": format_zoned(self.last_run_at, "Y-m-d H:i:s"),
        }

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
    )


def seconds_left(job, schedule):
    """Estimated seconds to finish a running job on its kind's schedule (bulkjobs.web.eta); or
    None for a job that is not running."""
    if job.status != Status.PROCESSING or not job.total_items:
        return None
    return eta.seconds_left(job.total_items - job.processed_items, schedule)


def format_duration(seconds):
    if seconds is None:
        return ""
    if seconds < 60:
        return _("less than a minute")
    minutes = round(seconds / 60)
    if minutes < 60:
        return _("about %(minutes)s min") % {"minutes": minutes}
    hours, minutes = divmod(minutes, 60)
    return _("about %(hours)s h %(minutes)s min") % {"hours": hours, "minutes": minutes}


def can_retry(job):
    return job.status in (Status.COMPLETED, Status.FAILED) and job.failed_items > 0


def job_urls(kind, job):
    args = [kind.name, job.pk]
    return {
        "detail": reverse("bulkjobs:job_detail", args=args),
        "cancel": reverse("bulkjobs:cancel", args=args),
        "retry": reverse("bulkjobs:retry", args=args),
        "csv": reverse("bulkjobs:job_items_csv", args=args),
        "json": reverse("bulkjobs:job_json", args=args),
    }


def pause_text(job, now):
    """ "Paused since HH:MM: <cause>" (with the date when the pause began on another day)."""
    since = localtime(job.paused_at)
    when = format_zoned(since, "H:i" if since.date() == localtime(now).date() else "Y-m-d H:i")
    return _("Paused since %(time)s: %(cause)s") % {"time": when, "cause": job.pause_cause}


def count_of(kind, n):
    """ "1 email", "142 emails", "3 cards"."""
    return f"{n} {kind.item_noun if n == 1 else kind.item_noun_plural}"


def outcome(kind, job):
    """(label, badge) saying what really happened, so the badge never flatters a job.

    A completed job with failures is not "Completed" in green; a cancelled job says how
    far it got ("Cancelled after 12 sent"); a paused job is not shown as running.
    """
    if job.is_paused:
        return _("Paused"), "paused"
    if job.status == Status.COMPLETED and job.failed_items:
        return _("Completed with %(count)s failed") % {"count": job.failed_items}, "partial"
    if job.status == Status.CANCELLED:
        label = _("Cancelled after %(count)s %(done)s") % {
            "count": job.succeeded_items,
            "done": kind.done_verb,
        }
        return label, "cancelled"
    return job.get_status_display(), job.status


def segments(kind, job):
    """The segmented bar: succeeded / failed / cancelled / remaining, as SVG x and width
    (percent of the total; attributes, not inline styles, so the CSP allows them)."""
    processed = job.processed_items
    total = max(job.total_items, processed)
    parts = [
        ("succeeded", capfirst(kind.done_verb), job.succeeded_items),
        ("failed", _("Failed"), job.failed_items),
        ("cancelled", _("Cancelled"), job.cancelled_items),
        ("remaining", _("Not yet %(done)s") % {"done": kind.done_verb}, max(0, total - processed)),
    ]
    result, x = [], 0.0
    for name, label, count in parts:
        width = 100 * count / total if total else 0
        result.append(
            {
                "name": name,
                "label": label,
                "count": count,
                "x": round(x, 3),
                "width": round(width, 3),
            }
        )
        x += width
    return result


def segments_text(kind, job, parts):
    """The bar's text equivalent: "12 sent, 2 failed, 0 cancelled, 8 not yet sent of 22 emails"."""
    counts = ", ".join(f"{part['count']} {part['label'].lower()}" for part in parts)
    return _("%(counts)s (of %(total)s)") % {
        "counts": counts,
        "total": count_of(kind, job.total_items),
    }


def with_titles(kind, jobs):
    """Add what identifies a job without a subject: its first card's holder (one
    subquery per row of the page, through the items' job index, never a query per row)."""
    if hasattr(kind.job_model, "subject"):
        return jobs
    item_fields = {f.name for f in kind.item_model._meta.get_fields()}
    if "card" not in item_fields:
        return jobs
    first_card = (
        kind.item_model.objects.filter(job_id=OuterRef("pk"))
        .order_by("id")
        .values("card__full_name")[:1]
    )
    return jobs.annotate(first_card_name=Subquery(first_card))


def job_title(kind, job):
    """The email's subject, or the card(s) a wallet job syncs ("Ada Lovelace and 5 other cards")."""
    subject = getattr(job, "subject", "")
    if subject:
        return subject
    first = getattr(job, "first_card_name", None)
    if not first:
        return ""
    others = job.total_items - 1
    if others <= 0:
        return first
    return _("%(first)s and %(count)s other %(items)s") % {
        "first": first,
        "count": others,
        "items": kind.item_noun if others == 1 else kind.item_noun_plural,
    }


def creator_name(job):
    """Who started the job; a kind's jobs queued by the app itself (wallet updates after
    card changes) say so instead of showing nobody."""
    user = job.created_by
    if user is None:
        return _("Automatic (card changes)") if getattr(job, "automatic", False) else ""
    return user.get_full_name() or user.get_username()


def cancel_question(kind, job, title):
    """ "Cancel email job #2, 'Trade fair follow-up': 142 emails not yet sent?" """
    remaining = max(0, job.total_items - job.processed_items)
    named = f", '{title}'" if title else ""
    return _("Cancel %(job)s #%(id)s%(named)s: %(count)s not yet %(done)s?") % {
        "job": kind.job_noun,
        "id": job.pk,
        "named": named,
        "count": count_of(kind, remaining),
        "done": kind.done_verb,
    }


def job_row(kind, job, now, schedule=None):
    """Everything a dashboard row shows, as plain values (template and JSON alike).

    Datetimes stay datetimes: templates format them, DjangoJSONEncoder writes ISO 8601.
    A paused job (waiting for its provider) shows as paused, not as running. `schedule`
    (an eta.Schedule) drives the time left; read here for a running job if not given.
    """
    if schedule is None and job.status == Status.PROCESSING:
        schedule = eta.schedules(job.company_id, processor_runs(), now, [kind])[kind.name]
    left = seconds_left(job, schedule)
    paused = job.is_paused
    label, badge = outcome(kind, job)
    title = job_title(kind, job)
    parts = segments(kind, job)
    return {
        "id": job.pk,
        "kind": kind.name,
        "kind_label": capfirst(kind.job_noun),
        "title": title,
        "size": count_of(kind, job.total_items),
        "status": job.status,
        "status_label": label,
        "badge": badge,
        "finished": not job.is_active,
        "paused": paused,
        "paused_since": job.paused_at if paused else None,
        "created_by": creator_name(job),
        "created_at": job.created_at,
        "total": job.total_items,
        "processed": job.processed_items,
        "succeeded": job.succeeded_items,
        "failed": job.failed_items,
        "cancelled": job.cancelled_items,
        "percent": job.percent_done,
        "segments": parts,
        "segments_text": segments_text(kind, job, parts),
        "last_processed_at": job.last_processed_at,
        "seconds_left": None if paused else left,
        "time_left": "" if paused else format_duration(left),
        "reason": pause_text(job, now) if paused else job.reason,
        "can_cancel": job.is_active,
        "can_retry": can_retry(job),
        "cancel_question": cancel_question(kind, job, title),
        "urls": job_urls(kind, job),
    }


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
    runs = processor_runs() if runs is None else runs
    prints = fingerprints(company, ordered_kinds()) if prints is None else prints
    pages = {}
    for kind in ordered_kinds():
        if job_filter and job_filter.kinds is not None and kind.name not in job_filter.kinds:
            continue
        jobs = with_titles(
            kind,
            kind.job_model.objects.filter(company=company)
            .select_related("created_by")
            .order_by("-created_at", "-id"),
        )
        paginator = Paginator(jobs, JOBS_PER_PAGE)
        if job_filter and job_filter.q:
            paginator = Paginator(jobs.filter(job_filter.q), JOBS_PER_PAGE)
        else:
            # The fingerprint already counted the jobs; spare the paginator its own COUNT.
            paginator.count = prints[kind.name]["count"]
        pages[kind] = paginator.get_page(page_numbers.get(page_param(kind)))
    # The schedule behind "time left" is read only for kinds with a running job shown.
    running = [k for k, page in pages.items() if any(j.status == Status.PROCESSING for j in page)]
    plans = eta.schedules(company, runs, now, running)
    result = []
    for kind, page in pages.items():
        rows = [job_row(kind, job, now, plans.get(kind.name)) for job in page.object_list]
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
