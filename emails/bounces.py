"""Bounces read back: what a bounce, a delay notice or a spam complaint says about an email
the mail server had accepted, written on its item and the suppression list.

A report reaches BOUNCE_ADDRESS's mailbox through the item's VERP envelope sender
(emails/verp.py): `manage.py process_bounces` hands each message to process_message()
(from standard input, a Maildir or IMAP: emails/bounce_sources.py). What it does:
- finds the signed token naming the item (the envelope recipient the MTA passes, the
  Delivered-To / X-Original-To / To headers, else anywhere in the message, as a
  feedback report quotes the original's Return-Path); a token whose signature is not
  ours, or two different items, change nothing;
- reads the report: an RFC 5965 feedback report (ARF) is a complaint; an RFC 3464
  delivery status notification gives its Action and Status per recipient; an
  auto-reply (RFC 3834 Auto-Submitted, X-Autoreply, "Out of office") is ignored; any
  other message is given to flufl.bounce, which knows the common non-standard bounces
  (qmail, Exim, Microsoft...), and an enhanced status code in its text is taken;
- classifies as emails/status.py does for a refusal at delivery: 5.1.x and 5.2.1 are
  certainly undeliverable (hard: suppressed, as a bounce), another permanent failure
  (5.7.x, 5.4.x, a queue that expired) marks the item without suppressing, a delay or
  a 4.x.x status counts a soft bounce, a complaint suppresses as a complaint;
- writes it with record_bounce(), the one writer of the item's bounce fields: a
  compare-and-set, so the same report read twice (a Maildir processed again, an MTA
  delivering twice) counts once, and a weaker report never overwrites a stronger one.
The item stays `completed` (the email was sent): its job's counters do not move.
"""

import email
import hashlib
import logging
import re
from dataclasses import dataclass
from email import policy

from django.db import transaction
from django.utils import timezone

from . import verp
from .models import BulkEmailJobItem, EmailSuppression
from .status import enhanced_code, is_hard
from .unsubscribe import suppress

log = logging.getLogger("emails.bounces")

Bounce = BulkEmailJobItem.Bounce

# How strong each outcome is: a report never replaces a stronger one (a delay notice
# arriving after the final bounce).
_RANK = {"": 0, Bounce.SOFT: 1, Bounce.FAILED: 2, Bounce.HARD: 3, Bounce.COMPLAINT: 4}

# Headers that carry the envelope recipient, as MTAs add them on final delivery.
_RECIPIENT_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")

_AUTO_REPLY_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ -]?(reply|response|antwort)|out of (the )?office|abwesenheit|"
    r"urlaub|vacation|r[ée]ponse automatique|away from)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Report:
    """What a message says: `outcome` a Bounce value, or "" for nothing to act on
    (`why` says what it was), with the enhanced status code and the server's words."""

    outcome: str
    status: str = ""
    detail: str = ""
    why: str = ""


#: Results of process_message(), as the command counts them.
RESULTS = ("hard", "failed", "soft", "complaint", "duplicate", "ignored", "no token", "forged")


def process_message(raw, envelope_recipient=""):
    """Read one message (bytes) and act on it; returns one of RESULTS."""
    message = email.message_from_bytes(raw, policy=policy.compat32)
    pattern = verp.token_pattern()
    if pattern is None:
        log.warning("A bounce was read, but BOUNCE_ADDRESS is not set: ignored")
        return "ignored"
    token, why = _find_token(message, raw, pattern, envelope_recipient)
    if token is None:
        log.info("Message %s: %s; ignored", _message_id(message), why)
        return "no token"
    item_pk = verp.item_pk_for_token(token)
    if item_pk is None:
        log.warning("Message %s: a bounce token we did not sign; ignored", _message_id(message))
        return "forged"
    report = read_report(message)
    if not report.outcome:
        log.info("Message %s for item %s: %s; ignored", _message_id(message), item_pk, report.why)
        return "ignored"
    report_id = _message_id(message) or hashlib.sha256(raw).hexdigest()
    return record_bounce(item_pk, report, report_id[:255])


def read_report(message):
    """The Report a message makes (a compat32 email.message.Message)."""
    content_type = message.get_content_type()
    report_type = (message.get_param("report-type") or "").lower()
    parts = list(message.walk())
    if report_type == "feedback-report" or any(
        p.get_content_type() == "message/feedback-report" for p in parts
    ):
        return Report(Bounce.COMPLAINT, detail=_feedback_type(parts))
    status_part = next(
        (p for p in parts if p.get_content_type() == "message/delivery-status"), None
    )
    if status_part is not None:
        return _delivery_status(status_part)
    if _is_auto_reply(message) and content_type != "multipart/report":
        return Report("", why="an automatic reply")
    return _non_standard(message)


def _delivery_status(part):
    """Report of an RFC 3464 message/delivery-status part: its worst recipient block."""
    blocks = [b for b in _status_blocks(part) if b.get("Action")]
    worst = Report("", why="a delivery status notification without a failure")
    for block in blocks:
        action = (block.get("Action") or "").strip().lower()
        status = enhanced_code(block.get("Status") or "")
        detail = " ".join((block.get("Diagnostic-Code") or "").split())
        if action == "failed":
            report = _permanent(status, detail)
        elif action == "delayed" or status.startswith("4."):
            report = Report(Bounce.SOFT, status, detail)
        else:
            continue  # delivered, relayed, expanded: a success notice
        if _RANK[report.outcome] > _RANK[worst.outcome]:
            worst = report
    return worst


def _status_blocks(part):
    """The field blocks of a message/delivery-status part (per message, then per
    recipient), as mappings; compat32 parses them as a list of messages, or leaves a
    text payload when the part is malformed."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return payload
    text = payload if isinstance(payload, str) else ""
    return [
        email.message_from_string(block.strip() + "\n", policy=policy.compat32)
        for block in re.split(r"\r?\n\s*\r?\n", text)
        if block.strip()
    ]


def _permanent(status, detail):
    """A permanent failure: hard when the status says the address is undeliverable."""
    if not status:
        status = enhanced_code(detail)
    if is_hard(status):
        return Report(Bounce.HARD, status, detail)
    return Report(Bounce.FAILED, status, detail)


def _non_standard(message):
    """A bounce in no standard format, read by flufl.bounce's detectors."""
    from flufl.bounce import all_failures

    try:
        temporary, permanent = all_failures(message)
    except Exception:  # noqa: BLE001  (a detector tripping over a strange message)
        log.exception("flufl.bounce could not read message %s", _message_id(message))
        return Report("", why="a message no bounce detector could read")
    text = _text_of(message)
    status = enhanced_code(text)
    line = next((line for line in text.splitlines() if status and status in line), "")
    detail = " ".join(line.split())[:500]
    if permanent:
        return _permanent(status if status.startswith("5.") else "", detail)
    if temporary:
        return Report(Bounce.SOFT, status if status.startswith("4.") else "", detail)
    return Report("", why="not a bounce")


def _text_of(message):
    texts = []
    for part in message.walk():
        if part.get_content_maintype() == "text":
            payload = part.get_payload(decode=True) or b""
            texts.append(payload.decode(part.get_content_charset() or "utf-8", "replace"))
    return "\n".join(texts)


def _feedback_type(parts):
    for part in parts:
        if part.get_content_type() == "message/feedback-report":
            for block in _status_blocks(part):
                if block.get("Feedback-Type"):
                    return f"Feedback-Type: {block.get('Feedback-Type').strip()}"
    return "feedback report"


def _is_auto_reply(message):
    auto = (message.get("Auto-Submitted") or "").strip().lower()
    precedence = (message.get("Precedence") or "").strip().lower()
    return (
        (auto and auto != "no")
        or precedence == "auto_reply"
        or any(message.get(name) for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder"))
        or bool(_AUTO_REPLY_SUBJECT.match(str(message.get("Subject") or "")))
    )


def _find_token(message, raw, pattern, envelope_recipient):
    """(token, None), or (None, why): the envelope recipient or a recipient header
    first; else the one token found anywhere in the message."""
    for value in [envelope_recipient, *(message.get_all(h) or [] for h in _RECIPIENT_HEADERS)]:
        for text in value if isinstance(value, list) else [value]:
            match = pattern.search(str(text or ""))
            if match:
                return match.group(1).lower(), None
    found = {m.lower() for m in pattern.findall(raw.decode("utf-8", "replace"))}
    if len(found) == 1:
        return found.pop(), None
    if found:
        return None, f"{len(found)} different bounce tokens"
    return None, "no bounce token (not sent to a VERP address)"


def _message_id(message):
    return " ".join(str(message.get("Message-ID") or "").split())


def record_bounce(item_pk, report, report_id):
    """Write a report on its item and, for a hard bounce or a complaint, put the address
    on the company's suppression list. The one writer of the item's bounce fields: a
    compare-and-set on what was read, retried once if another process wrote meanwhile.
    Returns one of RESULTS."""
    items = BulkEmailJobItem.objects.select_related("job")
    for _attempt in range(2):
        item = items.filter(pk=item_pk).first()
        if item is None:
            log.info("A bounce for item %s, which no longer exists; ignored", item_pk)
            return "ignored"
        if item.bounce_report_id == report_id:
            return "duplicate"
        stronger = _RANK[report.outcome] >= _RANK[item.bounce]
        changes = {"bounce_report_id": report_id}
        if report.outcome == Bounce.SOFT:
            changes["soft_bounces"] = min(item.soft_bounces + 1, 32767)
        if stronger:
            changes.update(
                bounce=report.outcome,
                bounce_status=report.status[:16],
                bounce_detail=report.detail[:500],
                bounced_at=timezone.now(),
            )
        with transaction.atomic():
            written = BulkEmailJobItem.objects.filter(
                pk=item.pk,
                bounce=item.bounce,
                soft_bounces=item.soft_bounces,
                bounce_report_id=item.bounce_report_id,
            ).update(**changes)
            if not written:
                continue
            suppression = {
                Bounce.HARD: EmailSuppression.Reason.BOUNCED,
                Bounce.COMPLAINT: EmailSuppression.Reason.COMPLAINED,
            }.get(report.outcome)
            if suppression is not None:
                detail = f"{report.status} {report.detail}".strip() or str(report.outcome)
                suppress(item.job.company_id, item.recipient_email, suppression, detail)
        domain = item.recipient_email.rpartition("@")[2]
        # Item id and domain only: addresses stay out of the logs.
        log.info("Item %s (to …@%s): %s %s", item.pk, domain, report.outcome, report.status or "")
        return str(report.outcome)
    return "duplicate"
