"""The job actions: cancel, pause and resume (each a confirmation page, then POST), retry
of a finished job's failed items, and retry of those whose delivery is unknown (a
confirmation page stating the risk, then POST), for the company's admins only. Each
records the signed-in person as who did it (bulkjobs.ops.services.Actor).

Each goes through bulkjobs.ops.services like every other caller, and answer the page's
script with JSON, or anyone else with a message and a redirect back to where the form was.
"""

from django.contrib import messages
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.text import capfirst
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_http_methods, require_POST

from cards.tenancy import company_member_required, require_company_admin
from config.redirects import safe_next

from ..models import Status
from ..ops.services import (
    ONLY_UNKNOWN,
    Actor,
    cancel_job,
    pause_job,
    resume_job,
    retry_failed_items,
)
from .rows import can_retry, count_of, job_or_404, job_row, job_title
from .views import item_table

#: Items whose delivery is unknown listed on the confirmation page; the rest are counted.
UNKNOWN_LISTED = 20


def _wants_json(request):
    return "application/json" in request.headers.get("Accept", "")


def _back(request, fallback):
    """Where to go after an action: the page the form came from, if it is ours."""
    return safe_next(request, request.POST.get("next"), fallback)


def _job_name(kind, job):
    """ "Email job #2, 'Trade fair follow-up'": what a message about a job calls it."""
    title = job_title(kind, job)
    return f"{capfirst(kind.job_noun)} #{job.pk}" + (f", '{title}'" if title else "")


def _action_result(request, ok, text, level, job):
    """Answer an action: JSON for the page's script, else a message and a redirect back.

    The message is shown by base.html on the next page, announced to screen readers.
    """
    if _wants_json(request):
        return JsonResponse(
            {"ok": ok, "message": text, "level": messages.DEFAULT_TAGS[level], "status": job.status}
        )
    messages.add_message(request, level, text)
    return redirect(_back(request, "bulkjobs:dashboard"))


def _confirmation(request, kind, job, template):
    """The GET of an action: its confirmation page, with the job's row."""
    return render(
        request,
        template,
        {
            "kind": kind,
            "job": job,
            "row": job_row(kind, job, timezone.now()),
            "next": safe_next(request, request.GET.get("next")),
        },
    )


@require_http_methods(["GET", "POST"])
@company_member_required
def cancel(request, kind, pk):
    """GET: the confirmation page. POST: cancel through bulkjobs.ops.services.cancel_job."""
    kind, job = job_or_404(request, kind, pk)
    require_company_admin(request)
    if request.method == "GET":
        return _confirmation(request, kind, job, "bulkjobs/confirm_cancel.html")
    name = _job_name(kind, job)
    cancelled = cancel_job(job, by=Actor.person(request.user), reason="Cancelled by user")
    if cancelled is None:
        text = _("%(job)s is %(status)s; there was nothing to cancel.") % {
            "job": name,
            "status": job.get_status_display().lower(),
        }
        return _action_result(request, False, text, messages.WARNING, job)
    text = _("%(job)s cancelled after %(count)s %(done)s; %(left)s will not be %(done)s.") % {
        "job": name,
        "count": job.succeeded_items,
        "done": kind.done_verb,
        "left": count_of(kind, cancelled),
    }
    return _action_result(request, True, text, messages.SUCCESS, job)


@require_http_methods(["GET", "POST"])
@company_member_required
def pause(request, kind, pk):
    """GET: the confirmation page. POST: pause through bulkjobs.ops.services.pause_job."""
    kind, job = job_or_404(request, kind, pk)
    require_company_admin(request)
    if request.method == "GET":
        return _confirmation(request, kind, job, "bulkjobs/confirm_pause.html")
    name = _job_name(kind, job)
    if not pause_job(job, by=Actor.person(request.user)):
        text = _("%(job)s is %(status)s; only a waiting or running job can be paused.") % {
            "job": name,
            "status": job.get_status_display().lower(),
        }
        return _action_result(request, False, text, messages.WARNING, job)
    text = _(
        "%(job)s paused after %(count)s %(done)s; nothing more is %(done)s until it is resumed."
    ) % {"job": name, "count": job.succeeded_items, "done": kind.done_verb}
    return _action_result(request, True, text, messages.SUCCESS, job)


@require_http_methods(["GET", "POST"])
@company_member_required
def resume(request, kind, pk):
    """GET: the confirmation page. POST: resume through bulkjobs.ops.services.resume_job."""
    kind, job = job_or_404(request, kind, pk)
    require_company_admin(request)
    if request.method == "GET":
        return _confirmation(request, kind, job, "bulkjobs/confirm_resume.html")
    name = _job_name(kind, job)
    if not resume_job(job, by=Actor.person(request.user)):
        text = _("%(job)s is %(status)s; only a paused job can be resumed.") % {
            "job": name,
            "status": job.get_status_display().lower(),
        }
        return _action_result(request, False, text, messages.WARNING, job)
    text = _("%(job)s resumed; the next processor run goes on where it stopped.") % {"job": name}
    return _action_result(request, True, text, messages.SUCCESS, job)


@require_POST
@company_member_required
def retry(request, kind, pk):
    """Queue a finished job's failed items again through bulkjobs.ops.services.retry_failed_items."""
    kind, job = job_or_404(request, kind, pk)
    require_company_admin(request)
    name = _job_name(kind, job)
    try:
        result = retry_failed_items(job, by=Actor.person(request.user))
    except ValueError as exc:
        text, level, ok = str(exc), messages.ERROR, False
    else:
        # Suppressed addresses, and items whose delivery is unknown (retry_unknown).
        ok, skipped = result.queued > 0, result.left_failed_text()
        if ok:
            text = _("%(job)s: %(count)s failed item(s) queued again.") % {
                "job": name,
                "count": result.queued,
            }
            text += f" {skipped}." if skipped else ""
            level = messages.SUCCESS
        elif skipped:
            text = _("%(job)s: nothing queued again; %(skipped)s.") % {
                "job": name,
                "skipped": skipped,
            }
            level = messages.WARNING
        else:
            text = _("%(job)s has no failed items to retry.") % {"job": name}
            level = messages.WARNING
    return _action_result(request, ok, text, level, job)


def unknown_items(kind, job):
    """The job's failed items whose delivery is unknown (kind.unknown_outcome()), or None
    when the job cannot be retried or its kind has no such items."""
    is_unknown = kind.unknown_outcome()
    if is_unknown is None or not can_retry(job):
        return None
    return kind.item_model.objects.filter(is_unknown, job_id=job.pk, status=Status.FAILED)


@require_http_methods(["GET", "POST"])
@company_member_required
def retry_unknown(request, kind, pk):
    """GET: the confirmation page, which says that these recipients may already have the
    email. POST: queue those items, and only those, again through
    bulkjobs.ops.services.retry_failed_items(unknown=ONLY_UNKNOWN)."""
    kind, job = job_or_404(request, kind, pk)
    require_company_admin(request)
    if request.method == "GET":
        items = unknown_items(kind, job)
        count = items.count() if items is not None else 0
        columns, rows = item_table(kind, items, UNKNOWN_LISTED) if count else ([], [])
        return render(
            request,
            "bulkjobs/confirm_retry_unknown.html",
            {
                "kind": kind,
                "job": job,
                "row": job_row(kind, job, timezone.now()),
                "count": count,
                "columns": columns,
                "rows": rows,
                "more": count - len(rows),
                "next": safe_next(request, request.GET.get("next")),
            },
        )
    name = _job_name(kind, job)
    try:
        result = retry_failed_items(job, by=Actor.person(request.user), unknown=ONLY_UNKNOWN)
    except ValueError as exc:
        return _action_result(request, False, str(exc), messages.ERROR, job)
    skipped = result.skipped_text()
    if result.queued:
        text = ngettext(
            "%(job)s: %(count)s item whose delivery is unknown queued again.",
            "%(job)s: %(count)s items whose delivery is unknown queued again.",
            result.queued,
        ) % {"job": name, "count": result.queued}
        text += f" {skipped}." if skipped else ""
        return _action_result(request, True, text, messages.SUCCESS, job)
    if skipped:
        text = _("%(job)s: nothing queued again; %(skipped)s.") % {"job": name, "skipped": skipped}
    else:
        text = _("%(job)s has no items whose delivery is unknown to retry.") % {"job": name}
    return _action_result(request, False, text, messages.WARNING, job)
