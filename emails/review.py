"""Reviewing a send before it is queued, and the email exactly as it will be sent.

The send page saves what it checked as an EmailDraft (the parsed list stays on the
server) and, for a list above settings.EMAIL_REVIEW_THRESHOLD recipients or when asked
("Review first"), shows its review: one summary (recipients, duplicates dropped, card,
subject, Reply-To, the company's pace and when it would start and end), the real email
beside it, "Send a test to me" and Confirm. Every view here answers 404 for a draft of
another company or of another person, and every POST is CSRF-checked.

The email is shown from its own URL (draft_email) in a sandboxed frame: the HTML part of
the very message the job sends (emails.message.CardEmail, the same code), served with
its own Content-Security-Policy, which lets the email's inline styles and images in and
nothing else (no script, no form, no frame); the page's own policy forbids inline
styles, and a frame made with srcdoc would inherit it.
"""

import logging
from datetime import timedelta

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.mail import get_connection
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_GET, require_POST

from bulkjobs.kinds import get_kind
from bulkjobs.web import eta, queue
from bulkjobs.web.rows import format_duration
from cards.models import BusinessCard
from cards.tenancy import company_admin_required, current_company, get_company_object_or_404

from .message import CardEmail
from .models import BulkEmailJob, BulkEmailJobItem, EmailDraft
from .recipients import RecipientListError
from .services import create_email_job

log = logging.getLogger(__name__)

#: Drafts older than this are deleted when the next one is saved.
DRAFT_HOURS = 24
#: Drafts one person keeps (a review open in several tabs); older ones are deleted.
DRAFTS_PER_USER = 5

#: The preview frame's policy: the email's inline styles and its images (the wallet
#: buttons, a photo) and nothing else; `sandbox` also when the URL is opened directly.
EMAIL_FRAME_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; "
    "frame-ancestors 'self'; sandbox"
)


def save_draft(request, company, data, recipients=None, duplicates=0):
    """Keep a checked send for its review; `recipients` the parsed list (None: each card
    to its holder)."""
    now = timezone.now()
    EmailDraft.objects.filter(created_at__lt=now - timedelta(hours=DRAFT_HOURS)).delete()
    kept = EmailDraft.objects.filter(created_by=request.user).order_by("-created_at")
    stale = list(kept.values_list("pk", flat=True)[DRAFTS_PER_USER - 1 :])
    if stale:
        EmailDraft.objects.filter(pk__in=stale).delete()
    cards = data["cards"]
    return EmailDraft.objects.create(
        company=company,
        created_by=request.user,
        card_ids=[card.pk for card in cards],
        subject=data["subject"],
        message=data["message"],
        to_list=recipients is not None,
        recipients=[[r.email, r.name] for r in recipients] if recipients is not None else [],
        recipient_count=len(recipients) if recipients is not None else len(cards),
        duplicate_count=duplicates,
    )


def get_draft(request, draft_id):
    """The user's own draft of their company, or 404."""
    return get_company_object_or_404(
        request, EmailDraft.objects.all(), pk=draft_id, created_by=request.user
    )


def draft_cards(draft):
    """The draft's cards still in its company, in the order chosen."""
    found = BusinessCard.objects.filter(company=draft.company_id, pk__in=draft.card_ids)
    by_pk = {card.pk: card for card in found.select_related("company")}
    return [by_pk[pk] for pk in draft.card_ids if pk in by_pk]


def _card_email(draft, card):
    job = BulkEmailJob(company=draft.company, subject=draft.subject, message=draft.message)
    return job, CardEmail(job, card)


def first_message(draft, cards):
    """The message the draft's first recipient would get (nothing saved or sent)."""
    card = cards[0]
    job, card_email = _card_email(draft, card)
    if draft.to_list:
        email, name = draft.recipients[0]
    else:
        email, name = card.email, card.full_name
    item = BulkEmailJobItem(job=job, card=card, recipient_email=email, recipient_name=name)
    return card_email, card_email.for_recipient(item)


def _display_address(email, name):
    return f"{name} <{email}>" if name else email


def _start_estimate(company, count):
    """The company's pace and how long this many would take behind its active jobs, from
    the same schedule as the job pages' time left (bulkjobs.web.eta)."""
    kind = get_kind("email")
    now = timezone.now()
    runs = eta.processor_runs()
    schedule = eta.schedules(company, runs, now, [kind])[kind.name]
    others = list(
        BulkEmailJob.objects.filter(company=company)
        .active()
        .values_list("total_items", "succeeded_items", "failed_items", "cancelled_items")
    )
    remaining = [total - done - failed - cancelled for total, done, failed, cancelled in others]
    items = eta.items_until_done(count, remaining, schedule.batch_size)
    rate = kind.company_rate
    return {
        "pace": (
            ngettext("%(count)s email a minute", "%(count)s emails a minute", round(per))
            % {"count": round(per)}
            if (per := eta.items_per_minute(schedule))
            else ""
        ),
        "pace_limited": rate is not None,
        "active_jobs": len(others),
        "duration": format_duration(eta.seconds_left(items, schedule)),
    }


@require_GET
@company_admin_required
def review(request, draft_id):
    draft = get_draft(request, draft_id)
    cards = draft_cards(draft)
    if len(cards) != len(draft.card_ids):
        messages.error(request, _("A card of this send was deleted; choose the cards again."))
        return redirect("emails:send")
    card_email, message = first_message(draft, cards)
    context = {
        "draft": draft,
        "cards": cards,
        "reply_to": ", ".join(message.reply_to) or _("none (replies go to the sender address)"),
        "from_email": message.from_email,
        # As typed, not as the header encodes it (=?utf-8?b?...?=).
        "first_to": _display_address(
            *(draft.recipients[0] if draft.to_list else (cards[0].email, cards[0].full_name))
        ),
        "attachment": card_email.vcard_name,
        "estimate": _start_estimate(draft.company, draft.recipient_count),
        "user_email": request.user.email,
    }
    return render(request, "emails/review.html", context)


@require_GET
@company_admin_required
@xframe_options_sameorigin
def draft_email(request, draft_id):
    """The HTML part of the draft's first email, as sent, for the preview frame."""
    draft = get_draft(request, draft_id)
    cards = draft_cards(draft)
    if not cards:
        return HttpResponse(status=404)
    _card_email, message = first_message(draft, cards)
    response = HttpResponse(message.alternatives[0][0], content_type="text/html; charset=utf-8")
    response["Content-Security-Policy"] = EMAIL_FRAME_POLICY
    response["Cache-Control"] = "private, no-store"
    return response


@require_POST
@company_admin_required
def test_send(request, draft_id):
    """The email to the signed-in person: not part of the job, not checked against the
    suppression list, through the configured mail backend."""
    draft = get_draft(request, draft_id)
    back = reverse("emails:review", args=[draft.pk])
    cards = draft_cards(draft)
    email = request.user.email
    if not email or not cards:
        messages.error(request, _("Your account has no email address to send a test to."))
        return redirect(back)
    _job, card_email = _card_email(draft, cards[0])
    message = card_email.test_message(email, request.user.get_full_name())
    try:
        with get_connection() as connection:
            message.connection = connection
            message.send()
    except Exception as exc:  # the backend's own words, for the person who asked
        log.warning("Test email for draft %s failed: %s", draft.pk, type(exc).__name__)
        messages.error(request, _("The test email could not be sent: %(error)s") % {"error": exc})
    else:
        messages.success(
            request,
            _("A test email was sent to %(email)s. It is not part of the job.") % {"email": email},
        )
    return redirect(back)


@require_POST
@company_admin_required
def confirm(request, draft_id):
    draft = get_draft(request, draft_id)
    company = current_company(request)
    cards = draft_cards(draft)
    if len(cards) != len(draft.card_ids):
        messages.error(request, _("A card of this send was deleted; choose the cards again."))
        return redirect("emails:send")
    try:
        job = create_email_job(
            company=company,
            cards=cards,
            subject=draft.subject,
            message=draft.message,
            recipients=draft.recipients if draft.to_list else None,
            created_by=request.user,
            # A list's draft exists only once its sender (the only one who may confirm
            # it) ticked the consent on the send page.
            consent_confirmed_by=request.user if draft.to_list else None,
        )
    except RecipientListError as exc:
        for line in exc.bad_lines[:5]:
            messages.error(request, str(line))
        return redirect(reverse("emails:send") + f"?draft={draft.pk}")
    except ValidationError as exc:
        for text in exc.messages:
            messages.error(request, text)
        return redirect(reverse("emails:send") + f"?draft={draft.pk}")
    draft.delete()
    return job_created(request, job)


def job_created(request, job):
    """The message after creating a job (with where it stands in the queue) and its page."""
    created = ngettext(
        "Email job #%(job)s created with %(count)s recipient.",
        "Email job #%(job)s created with %(count)s recipients.",
        job.total_items,
    ) % {"job": job.pk, "count": job.total_items}
    waits = queue.wait_of_new_job(get_kind("email"), job)
    messages.success(request, f"{created} {waits}")
    return redirect(reverse("bulkjobs:job_detail", args=["email", job.pk]))
