"""Bulk email jobs and items (original table names) and the suppression list."""

import secrets
import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy

from bulkjobs.models import BulkJob, BulkJobItem


def new_message_id_key():
    """Random, per job: in every Message-ID of the job (emails.message.message_id_for)."""
    return secrets.token_hex(6)


class BulkEmailJob(BulkJob):
    subject = models.CharField(max_length=200)
    message = models.TextField(blank=True, help_text="Personal message shown above the card.")
    # Keeps the Message-IDs of two databases sending at one domain apart (job and item
    # ids repeat across databases). Drawn by emails.services.create_email_job; a job
    # from before it (or an older release's) has "" and Message-IDs without it.
    message_id_key = models.CharField(max_length=16, default="", db_default="", editable=False)
    # For a pasted or uploaded list (UWG section 7): who confirmed on the send page that
    # its recipients agreed to receive the card, and when. Empty for "each card to its
    # holder".
    consent_confirmed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name="recipients' consent confirmed by",
    )
    consent_confirmed_at = models.DateTimeField(
        "recipients' consent confirmed at", null=True, blank=True
    )

    class Meta(BulkJob.Meta):
        db_table = "bulk_email_jobs"
        verbose_name = "bulk email job"


class BulkEmailJobItem(BulkJobItem):
    # No index of its own: the batch index (job, status, id) starts with it and serves
    # every lookup by job; a second one cost every write of an item (items are written
    # twice per email) about a tenth of the database's work.
    job = models.ForeignKey(
        BulkEmailJob,
        on_delete=models.CASCADE,
        related_name="items",
        db_column="bulk_email_job_id",
        db_index=False,
    )
    # A card deleted while its job runs fails its items with a reason instead of
    # silently removing them.
    # Verbose names are the job page's and the CSV's column headers: translated.
    card = models.ForeignKey(
        "cards.BusinessCard",
        on_delete=models.SET_NULL,
        null=True,
        related_name="+",
        verbose_name=gettext_lazy("card"),
    )
    recipient_email = models.EmailField(gettext_lazy("recipient email"), max_length=254)
    recipient_name = models.CharField(gettext_lazy("recipient name"), max_length=200, blank=True)

    class Bounce(models.TextChoices):
        """What a bounce or feedback report said after the mail server accepted the
        email (emails/bounces.py); the item stays `completed`, as it was sent."""

        SOFT = "soft", gettext_lazy("Delayed (soft bounce)")
        FAILED = "failed", gettext_lazy("Bounced after delivery")
        HARD = "hard", gettext_lazy("Bounced after delivery: address undeliverable")
        COMPLAINT = "complaint", gettext_lazy("Spam complaint")

    # Written by emails.bounces.record_bounce only; db_default: no table rewrite.
    bounce = models.CharField(
        gettext_lazy("bounce"),
        max_length=10,
        choices=Bounce.choices,
        blank=True,
        default="",
        db_default="",
    )
    #: the enhanced status code the report gave ("5.1.1"), if any
    bounce_status = models.CharField(
        gettext_lazy("bounce status"), max_length=16, blank=True, default="", db_default=""
    )
    soft_bounces = models.PositiveSmallIntegerField(
        gettext_lazy("soft bounces"), default=0, db_default=0
    )
    bounced_at = models.DateTimeField(null=True, blank=True)
    #: the remote server's words (a DSN's Diagnostic-Code), verbatim
    bounce_detail = models.CharField(max_length=500, blank=True, default="", db_default="")
    #: the last report's Message-ID (or digest): the same report read twice counts once
    bounce_report_id = models.CharField(max_length=255, blank=True, default="", db_default="")

    class Meta(BulkJobItem.Meta):
        db_table = "bulk_email_job_items"
        verbose_name = "bulk email item"


class EmailSuppression(models.Model):
    """An address of a company's that must not be emailed again."""

    class Reason(models.TextChoices):
        # Translated for the operators' admin; inside the retry sentence the job pages use
        # emails.kind.SKIPPED_LABELS.
        UNSUBSCRIBED = "unsubscribed", gettext_lazy("Unsubscribed")
        BOUNCED = "bounced", gettext_lazy("Hard bounce")
        COMPLAINED = "complained", gettext_lazy("Spam complaint")
        REJECTED = "rejected", gettext_lazy("Rejected by the ESP")

    company = models.ForeignKey("cards.Company", on_delete=models.CASCADE, related_name="+")
    # Stored lower-cased; matched case-insensitively by storing it that way.
    email = models.EmailField(max_length=254)
    reason = models.CharField(max_length=20, choices=Reason.choices)
    detail = models.CharField(max_length=500, blank=True)
    # Asked on the unsubscribe page: no card emails from this platform at all, whichever
    # company sends (emails.unsubscribe.suppressed_among checks it across companies).
    platform_wide = models.BooleanField(
        "for every company",
        default=False,
        db_default=False,
        help_text="The person asked for no card emails from this platform at all.",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["company", "email"], name="suppression_unique_address"),
        ]
        indexes = [
            # Serves the send-time check across companies (email IN (...) AND platform_wide).
            models.Index(fields=["email", "platform_wide"], name="suppression_email_idx"),
        ]

    def __str__(self):
        return f"{self.email} ({self.reason})"


class EmailDraft(models.Model):
    """A checked send kept between the send page and its review: the parsed recipient
    list stays on the server, bound to its company and to the person who made it, so
    that what is confirmed is what was reviewed and no list is ever taken back from the
    browser. Drafts older than DRAFT_HOURS are deleted when the next one is saved; a
    person keeps at most DRAFTS_PER_USER (emails/review.py)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    company = models.ForeignKey("cards.Company", on_delete=models.CASCADE, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    card_ids = models.JSONField(default=list)
    subject = models.CharField(max_length=200)
    message = models.TextField(blank=True)
    #: the parsed list, [[address, name], ...] (checked again on confirm); empty when
    #: each card goes to its holder
    recipients = models.JSONField(default=list)
    to_list = models.BooleanField(default=False)
    recipient_count = models.PositiveIntegerField(default=0)
    duplicate_count = models.PositiveIntegerField(default=0)

    def __str__(self):
        return f"draft {self.pk} ({self.recipient_count} recipients)"
