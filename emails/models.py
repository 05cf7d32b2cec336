"""Bulk email jobs and items (original table names) and the suppression list."""

import secrets

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
    job = models.ForeignKey(
        BulkEmailJob, on_delete=models.CASCADE, related_name="items", db_column="bulk_email_job_id"
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
