"""One job as the pages show it: the job a URL names, found in the viewer's company
(job_or_404), and its row, the same plain values for the dashboard's list, the job page,
the cancel confirmation and the JSON polls.

What really happened (the badge never flatters a job), the segmented bar and its text,
the job's title, who started it, the time left on its kind's schedule
(bulkjobs.web.eta), what a waiting job waits for and until when (bulkjobs.web.queue)
and the URLs of its page and actions.
"""

from django.db.models import OuterRef, Subquery
from django.http import Http404
from django.urls import reverse
from django.utils.text import capfirst
from django.utils.timezone import localtime
from django.utils.translation import gettext as _

from cards.locale import format_zoned
from cards.tenancy import get_company_object_or_404

from ..kinds import get_kind
from ..models import WAITING_PREFIX, Status
from . import eta, queue


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


def _kind_or_404(name):
    try:
        return get_kind(name)
    except LookupError:
        raise Http404(f"No job kind {name!r}.") from None


def job_or_404(request, kind_name, pk):
    """(kind, job) of a job page's URL: the job of the viewer's company (404 for another
    company's), with its creator and its title (with_titles)."""
    kind = _kind_or_404(kind_name)
    jobs = with_titles(kind, kind.job_model.objects.select_related("created_by"))
    job = get_company_object_or_404(request, jobs, pk=pk)
    return kind, job


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


def job_row(kind, job, now, schedule=None, company_queue=None):
    """Everything a dashboard row shows, as plain values (template and JSON alike).

    Datetimes stay datetimes: templates format them, DjangoJSONEncoder writes ISO 8601.
    A paused job (waiting for its provider) shows as paused, not as running. `schedule`
    (an eta.Schedule) drives the time left, and `company_queue` (a queue.CompanyQueue of
    the job's company and kind) what a waiting job waits for; both are read here for an
    active job if not given.
    """
    if job.is_active and (schedule is None or company_queue is None):
        runs = eta.processor_runs()
        if schedule is None:
            schedule = eta.schedules(job.company_id, runs, now, [kind])[kind.name]
        if company_queue is None:
            company_queue = queue.load(kind, job.company_id, now, schedule, runs.get(kind.name))
    if company_queue is not None:
        left = company_queue.seconds_left(job)
        wait = company_queue.wait(job)
    else:
        left, wait = seconds_left(job, schedule), None
    paused = job.is_paused
    label, badge = outcome(kind, job)
    title = job_title(kind, job)
    parts = segments(kind, job)
    reason = pause_text(job, now) if paused else job.reason
    if wait is not None and reason.startswith(WAITING_PREFIX):
        # The engine's note of a rate limit, in its words: the wait says it in the
        # reader's language and zone, and as it is now.
        reason = ""
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
        "reason": reason,
        # What a waiting job waits for and until when (bulkjobs.web.queue).
        "waiting": wait.text if wait else "",
        "waiting_code": wait.code if wait else "",
        "starts_at": wait.starts_at if wait else None,
        "behind": wait.behind.pk if wait and wait.behind is not None else None,
        "can_cancel": job.is_active,
        "can_retry": can_retry(job),
        "cancel_question": cancel_question(kind, job, title),
        "urls": job_urls(kind, job),
    }
