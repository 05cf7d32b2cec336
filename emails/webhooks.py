"""ESP bounce and complaint webhooks (django-anymail, optional) into the suppression list.

The ESP posts its delivery events to anymail's tracking views, which check the post
(HTTP basic auth with ANYMAIL["WEBHOOK_SECRET"], plus the ESP's own signature where it
has one, such as Mailgun's webhook signing key), normalise the events and send anymail's
`tracking` signal; record_tracking_event() below, connected in EmailsConfig.ready(),
turns bounces, complaints, ESP rejections and ESP unsubscribes into suppressions.

Which company an event belongs to comes from the metadata every card email carries
(emails/message.py: company, job and item ids), which the ESP echoes back: the item
decides when it still exists and its recipient matches the event's; once retention has
pruned it, the company id in the metadata does. An event that names no known company (mail
the platform sends otherwise) is logged and ignored.

The views are only reachable with a webhook secret configured: anymail alone would
accept unauthenticated posts (with a warning), letting anyone suppress addresses. They
are public URLs, so guard() answers every refusal with a 4xx and one log line (never a
traceback: anyone could fill the log): a method other than POST (405), an ESP that is
not set up (404), missing or wrong credentials or signature, a body the ESP's parser
cannot read (400); and each client address may post ESP_WEBHOOK_RATE_LIMIT requests
(429 beyond, not logged).
"""

import functools
import logging

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, SuspiciousOperation
from django.db import DatabaseError
from django.http import HttpResponse, HttpResponseForbidden, HttpResponseNotAllowed
from django.urls import path
from django.urls.resolvers import RoutePattern

from cards.models import Company
from config import throttle

from .models import BulkEmailJobItem, EmailSuppression
from .unsubscribe import suppress

log = logging.getLogger("emails.webhooks")

# anymail's normalised event types (anymail.signals.EventType) that end sending to an
# address, and the suppression reason each records.
SUPPRESSING_EVENTS = {
    "bounced": EmailSuppression.Reason.BOUNCED,
    "complained": EmailSuppression.Reason.COMPLAINED,
    "rejected": EmailSuppression.Reason.REJECTED,
    "unsubscribed": EmailSuppression.Reason.UNSUBSCRIBED,
}

# Bounce types that anymail reports as "bounced" although the ESP keeps trying or the
# mailbox may accept mail later (Postmark's "SoftBounce").
_SOFT_BOUNCE_TYPES = {"SoftBounce"}


def webhook_secret_configured():
    anymail = getattr(settings, "ANYMAIL", {}) or {}
    return bool(anymail.get("WEBHOOK_SECRET") or getattr(settings, "ANYMAIL_WEBHOOK_SECRET", ""))


def _refused(status, text):
    return throttle.quiet(
        HttpResponse(text, status=status, content_type="text/plain; charset=utf-8")
    )


def _first_line(exc, limit=200):
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text[:limit]


def guard(view, esp):
    """anymail's view `view` for `esp`, behind the checks the module docstring lists."""

    @functools.wraps(view)
    def guarded(request, *args, **kwargs):
        rate = throttle.rate_of("ESP_WEBHOOK_RATE_LIMIT", "120/min")
        if not throttle.allow(request, "esp-webhook", rate):
            return throttle.too_many()
        if not webhook_secret_configured():
            log.warning("ESP webhook %s refused: ANYMAIL_WEBHOOK_SECRET is not set", esp)
            return throttle.quiet(
                HttpResponseForbidden(
                    "ESP webhooks are off until ANYMAIL_WEBHOOK_SECRET is set.",
                    content_type="text/plain",
                )
            )
        # HEAD: some ESPs check that the URL exists before they save it.
        if request.method not in ("POST", "HEAD"):
            log.warning("ESP webhook %s refused: method %s", esp, request.method[:10])
            return throttle.quiet(HttpResponseNotAllowed(["POST", "HEAD"]))
        try:
            return view(request, *args, **kwargs)
        except ImproperlyConfigured as exc:
            # anymail builds the view per request and refuses an ESP without its settings.
            log.warning("ESP webhook %s refused: not set up (%s)", esp, _first_line(exc))
            return _refused(404, "This ESP's webhook is not set up.")
        except SuspiciousOperation as exc:
            # Missing or wrong basic auth, a bad signature (anymail's validation).
            log.warning("ESP webhook %s refused: %s", esp, _first_line(exc))
            return _refused(400, "Webhook validation failed.")
        except DatabaseError:
            raise  # ours to fix, and the ESP retries a 5xx
        except Exception as exc:
            # A body the ESP's parser cannot read: JSON of another shape, not JSON at all.
            log.warning("ESP webhook %s refused: unreadable body (%s)", esp, type(exc).__name__)
            return _refused(400, "The webhook body could not be read.")

    return guarded


def tracking_urlpatterns():
    """anymail's tracking webhook URLs ("<esp>/tracking/"), guarded; [] without anymail."""
    try:
        from anymail import urls as anymail_urls
    except ImportError:
        return []
    return [
        path(
            str(pattern.pattern),
            guard(pattern.callback, str(pattern.pattern).split("/")[0]),
            name=pattern.name,
        )
        for pattern in anymail_urls.urlpatterns
        if isinstance(pattern.pattern, RoutePattern) and "tracking" in pattern.name
    ]


def record_tracking_event(sender, event, esp_name, **kwargs):
    """anymail's `tracking` signal receiver: suppress the recipient of a bounce, complaint,
    rejection or unsubscribe, for the company the event's metadata names."""
    reason = SUPPRESSING_EVENTS.get(event.event_type)
    if reason is None or not event.recipient:
        return
    esp_event = event.esp_event if isinstance(event.esp_event, dict) else {}
    if reason == EmailSuppression.Reason.BOUNCED and esp_event.get("Type") in _SOFT_BOUNCE_TYPES:
        return
    domain = event.recipient.rpartition("@")[2]
    company_id = company_for(event)
    if company_id is None:
        log.info(
            "%s %s event for …@%s names no known company; ignored",
            esp_name,
            event.event_type,
            domain,
        )
        return
    words = event.description or event.mta_response or event.reject_reason or ""
    detail = f"{esp_name} reported {event.event_type}" + (f": {words}" if words else "")
    suppress(company_id, event.recipient, reason, " ".join(detail.split()))
    log.info(
        "%s %s event: …@%s suppressed for company %s",
        esp_name,
        event.event_type,
        domain,
        company_id,
    )


def company_for(event):
    """The id of the company whose email the event is about, or None."""
    metadata = event.metadata if isinstance(event.metadata, dict) else {}
    item_id, company_id = _id(metadata.get("item")), _id(metadata.get("company"))
    if item_id is not None:
        item = (
            BulkEmailJobItem.objects.filter(pk=item_id)
            .values_list("job__company_id", "recipient_email")
            .first()
        )
        if item is not None:
            item_company, recipient = item
            # A stale or foreign id must not suppress an address for another company.
            return item_company if recipient.lower() == event.recipient.lower() else None
    if company_id is not None and Company.objects.filter(pk=company_id).exists():
        return company_id
    return None


def _id(value):
    value = str(value or "")
    return int(value) if value.isascii() and value.isdigit() and 0 < int(value) < 2**63 else None
