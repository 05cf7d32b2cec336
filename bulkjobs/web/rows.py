"""One job as the pages show it: the job a URL names, found in the viewer's company
(job_or_404), and its row, the same plain values for the dashboard's list, the job page,
the confirmation pages and the JSON polls.

What really happened (the badge never flatters a job), the segmented bar and its text,
the job's title, who started it, who last cancelled, paused, resumed or retried it
(JobAction), the time left on its kind's schedule (bulkjobs.web.eta), what a waiting
job waits for and until when (bulkjobs.web.queue) and the URLs of its page and actions.
"""

from django.db.models import OuterRef, Subquery
from django.http import Http404
from django.urls import reverse
from django.utils.text import capfirst
from django.utils.timezone import localtime
from django.utils.translation import gettext as _

from cards.locale import format_zoned
from cards.tenancy import get_company_object_or_404, get_visible_object_or_404

from .. import reasons
from ..kinds import get_kind
from ..models import WAITING_PREFIX, JobAction, Status
from . import eta, queue

#: The latest action of a job's (JobAction) the rows read, as annotations.
LAST_ACTION_FIELDS = {
    "action": "last_action",
    "via": "last_action_via",
    "name": "last_action_name",
    "at": "last_action_at",
}


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


def can_pause(job):
    """A person may pause a job that is pending or processing (paused for its provider
    included)."""
    return job.is_active


def can_resume(job):
    return job.status == Status.PAUSED


def job_urls(kind, job):
    args = [kind.name, job.pk]
    return {
        "detail": reverse("bulkjobs:job_detail", args=args),
        "cancel": reverse("bulkjobs:cancel", args=args),
        "retry": reverse("bulkjobs:retry", args=args),
        "pause": reverse("bulkjobs:pause", args=args),
        "resume": reverse("bulkjobs:resume", args=args),
        "csv": reverse("bulkjobs:job_items_csv", args=args),
        "json": reverse("bulkjobs:job_json", args=args),
    }


def pause_text(job, now, for_staff=False):
    """ "Waiting since HH:MM CET: <cause>" for a job its provider paused (with the date
    when the wait began on another day); the cause in the reader's words
    (bulkjobs.reasons), its notice kept. Not "Paused": that is a person's pause."""
    since = localtime(job.paused_at)
    when = format_zoned(since, "H:i" if since.date() == localtime(now).date() else "Y-m-d H:i")
    cause = reasons.pause_cause(job, for_staff=for_staff)
    text = _("Waiting since %(time)s: %(cause)s") % {"time": when, "cause": cause}
    return reasons.Rendered.make(text, cause.notice)


def reason_text(job, now, for_staff=False):
    """The job's reason in the reader's words; a Rendered, whose notice (plain words
    for an operator-only cause) the page shows once."""
    if job.is_paused:
        return pause_text(job, now, for_staff)
    return reasons.describe(job, for_staff=for_staff)


def with_last_action(kind, jobs):
    """Annotate each job with its latest JobAction (who cancelled, paused, resumed or
    retried it, and when): subqueries of the page's query through the actions' job
    index, never a query per row."""
    latest = JobAction.objects.filter(kind=kind.name, job_id=OuterRef("pk")).order_by("-at", "-id")
    return jobs.annotate(
        **{alias: Subquery(latest.values(field)[:1]) for field, alias in LAST_ACTION_FIELDS.items()}
    )


def last_action(job):
    """The job's latest JobAction as with_last_action() annotated it (unsaved), or None."""
    if not getattr(job, "last_action", None):
        return None
    return JobAction(
        kind="",
        job_id=job.pk,
        **{field: getattr(job, alias) for field, alias in LAST_ACTION_FIELDS.items()},
    )


def count_of(kind, n):
    """ "1 email", "142 emails", "5.000 E-Mails": the number grouped the local way."""
    return f"{reasons.number(n)} {kind.item_noun if n == 1 else kind.item_noun_plural}"


def outcome(kind, job):
    """(label, badge) saying what really happened, so the badge never flatters a job.

    A completed job with failures is not "Completed" in green; a cancelled job says how
    far it got ("Cancelled after 12 sent"); a job a person paused shows "Paused", one
    waiting for its provider "Waiting for the mail server": neither as running.
    """
    if job.status == Status.PAUSED:
        return _("Paused"), "paused"
    if job.is_paused:
        return kind.provider_wait_label, "waiting"
    if job.status == Status.COMPLETED and job.failed_items:
        return _("Completed with %(count)s failed") % {
            "count": reasons.number(job.failed_items)
        }, "partial"
    if job.status == Status.CANCELLED:
        label = _("Cancelled after %(count)s %(done)s") % {
            "count": reasons.number(job.succeeded_items),
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
    counts = ", ".join(f"{reasons.number(part['count'])} {part['label'].lower()}" for part in parts)
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
    jobs = with_last_action(
        kind, with_titles(kind, kind.job_model.objects.select_related("created_by"))
    )
    job = get_company_object_or_404(request, jobs, pk=pk)
    return kind, job


def visible_job_or_404(request, kind_name, pk):
    """(kind, job) of a page that only reads the job: as job_or_404, but any company's
    job for a platform operator (cards.tenancy.get_visible_object_or_404), with its
    company joined in. Actions keep job_or_404."""
    kind = _kind_or_404(kind_name)
    jobs = with_last_action(
        kind, with_titles(kind, kind.job_model.objects.select_related("created_by", "company"))
    )
    job = get_visible_object_or_404(request, jobs, pk=pk)
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


def job_row(kind, job, now, schedule=None, company_queue=None, for_staff=False):
    """Everything a dashboard row shows, as plain values (template and JSON alike).

    Datetimes stay datetimes: templates format them, DjangoJSONEncoder writes ISO 8601.
    A paused job (waiting for its provider) shows as paused, not as running. `schedule`
    (an eta.Schedule) drives the time left, and `company_queue` (a queue.CompanyQueue of
    the job's company and kind) what a waiting job waits for; both are read here for an
    active job if not given; `company_queue=False` leaves the queue out (the operators'
    overview, whose rows are of many companies: their queue health says it). Operators (`for_staff`) read operator-only causes (setting
    names) in the reason; company users plain words, and `notice` once per page.
    """
    if job.is_active and (schedule is None or company_queue is None):
        runs = eta.processor_runs()
        if schedule is None:
            schedule = eta.schedules(job.company_id, runs, now, [kind])[kind.name]
        if company_queue is None:
            company_queue = queue.load(kind, job.company_id, now, schedule, runs.get(kind.name))
    if isinstance(company_queue, queue.CompanyQueue):
        left = company_queue.seconds_left(job)
        wait = company_queue.wait(job)
    else:
        left, wait = seconds_left(job, schedule), None
    paused = job.is_paused
    action = last_action(job)
    action_text = action.describe(now) if action is not None else ""
    label, badge = outcome(kind, job)
    reason = reason_text(job, now, for_staff)
    title = job_title(kind, job)
    parts = segments(kind, job)
    if wait is not None and (job.reason_code == "waiting" or job.reason.startswith(WAITING_PREFIX)):
        # The engine's note of a rate limit, as it was written: the wait says it as it
        # is now.
        reason = reasons.Rendered.make("", "")
    return {
        "id": job.pk,
        "kind": kind.name,
        "kind_label": capfirst(kind.job_noun),
        "title": title,
        "size": count_of(kind, job.total_items),
        "status": job.status,
        "status_label": label,
        "badge": badge,
        "finished": not job.is_open,
        # Waiting for its provider (the engine's pause) ...
        "paused": paused,
        "paused_since": job.paused_at if paused else None,
        # ... or paused by a person: "Paused by Anna Schmidt at 14:02 CET".
        "paused_by_person": job.status == Status.PAUSED,
        "last_action": action_text,
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
        "reason": str(reason),
        "notice": reason.notice,
        # What a waiting job waits for and until when (bulkjobs.web.queue).
        "waiting": wait.text if wait else "",
        "waiting_code": wait.code if wait else "",
        "starts_at": wait.starts_at if wait else None,
        "behind": wait.behind.pk if wait and wait.behind is not None else None,
        "can_cancel": job.is_open,
        "can_retry": can_retry(job),
        # The failed items Retry would queue (bulkjobs.web.failures), where the page
        # counted them (the company dashboard); None elsewhere.
        "retryable": None,
        "can_pause": can_pause(job),
        "can_resume": can_resume(job),
        "cancel_question": cancel_question(kind, job, title),
        "urls": job_urls(kind, job),
    }
