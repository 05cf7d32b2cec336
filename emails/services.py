"""Creating bulk email jobs: validate everything first, then create the job and items atomically."""

import logging
import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from bulkjobs.models.inserts import insert_rows

from .models import BulkEmailJob, BulkEmailJobItem, new_message_id_key
from .recipients import (
    MAX_BAD_LINES_LISTED,
    BadLine,
    Recipient,
    RecipientListError,
    address_problem,
    ascii_address,
    parse_recipients,
    too_many_recipients,
)

log = logging.getLogger("ProcessBulkEmailJob")

#: A line break in a subject would end the header early (every item would then fail);
#: other control characters have no place in a subject either.
SUBJECT_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f]")
SUBJECT_ON_ONE_LINE = gettext_lazy("The subject must be one line of text, without line breaks.")


def create_email_job(
    *,
    company,
    cards,
    subject,
    message="",
    recipients_text=None,
    recipients=None,
    created_by=None,
    consent_confirmed_by=None,
):
    """Create a bulk email job.

    Without recipients_text or recipients, each card is sent to its holder's address.
    With recipients_text, the one card given is sent to every address in the text (see
    emails.recipients for formats); with recipients, to each (address, name) pair, a list
    parsed before (a reviewed draft's), whose addresses are checked again.
    Raises ValidationError (RecipientListError for bad lines, or more recipients than
    settings.EMAIL_MAX_RECIPIENTS) and creates nothing on any problem; duplicates are
    dropped silently (case-insensitive). The job and all its items are created in one
    transaction: they appear together, or not at all. `consent_confirmed_by`: the user who
    confirmed that a list's recipients agreed to receive the card (stored with the time).
    """
    limit = settings.EMAIL_MAX_RECIPIENTS
    cards = list(cards)
    subject = (subject or "").strip()
    if not subject:
        raise ValidationError(_("Enter a subject."))
    if len(subject) > 200:
        raise ValidationError(_("The subject must be at most 200 characters."))
    if SUBJECT_FORBIDDEN.search(subject):
        raise ValidationError(SUBJECT_ON_ONE_LINE)
    if "\x00" in (message or ""):
        raise ValidationError(_("The message must not contain NUL characters."))
    if not cards:
        raise ValidationError(_("Choose at least one card."))
    outsiders = [card for card in cards if card.company_id != company.pk]
    if outsiders:
        raise ValidationError(_("Some cards do not belong to this company."))

    if recipients_text is None and recipients is None:
        pairs = []
        bad, seen = [], set()
        for number, card in enumerate(cards, start=1):
            try:
                email = ascii_address(card.email)
            except ValidationError:
                bad.append(
                    BadLine(number, card.full_name, _("the card has no valid email address"))
                )
                continue
            key = (card.pk, email.lower())
            if key not in seen:
                seen.add(key)
                pairs.append((card, email, card.full_name))
        if bad:
            raise RecipientListError(bad[:MAX_BAD_LINES_LISTED], len(bad))
        if len(pairs) > limit:
            raise too_many_recipients(limit)
        count = len(pairs)
        rows = ((card.pk, email, name) for card, email, name in pairs)
    else:
        if len(cards) != 1:
            raise ValidationError(_("Choose exactly one card to send to a list of addresses."))
        if recipients is not None:
            recipients = checked_again(recipients, limit)
        else:
            recipients, _duplicates = parse_recipients(recipients_text, max_recipients=limit)
        if not recipients:
            raise ValidationError(_("The recipient list is empty."))
        count, card_pk = len(recipients), cards[0].pk
        rows = ((card_pk, recipient.email, recipient.name) for recipient in recipients)

    with transaction.atomic():
        job = BulkEmailJob.objects.create(
            company=company,
            created_by=created_by,
            subject=subject,
            message=message,
            total_items=count,
            message_id_key=new_message_id_key(),
            consent_confirmed_by=consent_confirmed_by,
            consent_confirmed_at=timezone.now() if consent_confirmed_by else None,
        )
        insert_rows(
            BulkEmailJobItem,
            ("job", "card", "recipient_email", "recipient_name"),
            ((job.pk, *row) for row in rows),
        )
    log.info("Job %s created for company %s: %d recipient(s)", job.pk, company.pk, count)
    return job


def checked_again(pairs, limit):
    """Recipients from (address, name) pairs parsed before, each address checked again
    and duplicates dropped: a list kept between two requests is not trusted blindly."""
    recipients, seen = [], set()
    for email, name in pairs:
        address, problem = address_problem(str(email))
        if problem is not None:
            raise ValidationError(
                _("The recipient list changed since it was checked; send it again.")
            )
        if address.lower() in seen:
            continue
        seen.add(address.lower())
        recipients.append(Recipient(address, " ".join(str(name).split())[:200]))
        if len(recipients) > limit:
            raise too_many_recipients(limit)
    return recipients
