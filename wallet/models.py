"""Bulk wallet sync jobs and items (original table names), per-card wallet state and
Apple device registrations."""

import secrets
import uuid

from django.db import IntegrityError, models, transaction
from django.utils import timezone

from bulkjobs.models import BulkJob, BulkJobItem


class BulkWalletApiJob(BulkJob):
    class Meta(BulkJob.Meta):
        db_table = "bulk_wallet_api_jobs"
        verbose_name = "bulk wallet sync job"


class PlatformResult(models.TextChoices):
    SYNCED = "synced", "Synced"
    UNCHANGED = "unchanged", "Unchanged"
    SKIPPED = "skipped", "Skipped (not configured)"
    FAILED = "failed", "Failed"


class BulkWalletApiJobItem(BulkJobItem):
    job = models.ForeignKey(
        BulkWalletApiJob,
        on_delete=models.CASCADE,
        related_name="items",
        db_column="bulk_wallet_api_job_id",
    )
    # A card deleted while its job runs fails its item with a reason instead of
    # silently removing it.
    card = models.ForeignKey(
        "cards.BusinessCard", on_delete=models.SET_NULL, null=True, related_name="+"
    )
    apple_result = models.CharField(max_length=20, choices=PlatformResult.choices, blank=True)
    apple_detail = models.TextField(blank=True)
    google_result = models.CharField(max_length=20, choices=PlatformResult.choices, blank=True)
    google_detail = models.TextField(blank=True)

    class Meta(BulkJobItem.Meta):
        db_table = "bulk_wallet_api_job_items"
        verbose_name = "bulk wallet sync item"


def new_serial_number():
    return uuid.uuid4().hex


def new_auth_token():
    # Apple requires at least 16 characters; 32 bytes give 43 URL-safe characters.
    return secrets.token_urlsafe(32)


class CardWalletStateManager(models.Manager):
    def for_card(self, card):
        """The card's wallet state, created on first use (safe when two processes race)."""
        try:
            return self.get(card=card)
        except self.model.DoesNotExist:
            pass
        try:
            with transaction.atomic():
                return self.create(card=card)
        except IntegrityError:
            return self.get(card=card)


class CardWalletState(models.Model):
    """What was last issued to the wallets for one card.

    The serial number and authentication token are generated once and never change:
    Apple identifies a pass by (pass type id, serial number), and devices keep the token.
    """

    card = models.OneToOneField(
        "cards.BusinessCard", on_delete=models.CASCADE, related_name="wallet_state"
    )
    apple_serial_number = models.CharField(
        max_length=64, unique=True, default=new_serial_number, editable=False
    )
    apple_auth_token = models.CharField(max_length=100, default=new_auth_token, editable=False)
    # The last built and signed .pkpass, served to devices by the PassKit web service.
    apple_pass_data = models.BinaryField(null=True, blank=True)
    # SHA-256 of the manifest of the last pass whose pushes all went out; a pass stored
    # but not yet fully pushed keeps the old hash, so a retried item pushes again.
    apple_content_hash = models.CharField(max_length=64, blank=True)
    # Milliseconds since the epoch, strictly increasing per pass; devices send back the
    # largest one they saw as passesUpdatedSince.
    apple_update_tag = models.BigIntegerField(default=0)
    apple_updated_at = models.DateTimeField(null=True, blank=True)
    google_object_id = models.CharField(max_length=200, blank=True)
    google_content_hash = models.CharField(max_length=64, blank=True)

    objects = CardWalletStateManager()

    class Meta:
        verbose_name = "card wallet state"
        indexes = [
            # Serves the PassKit "serials updated since" query: ... AND apple_update_tag > ?.
            models.Index(fields=["apple_update_tag"], name="wallet_state_update_tag_idx"),
        ]

    def __str__(self):
        return f"Wallet state of card {self.card_id}"

    def store_apple_pass(self, data, now=None):
        """Save a newly built pass and move its update tag forward; returns the new tag."""
        now = now or timezone.now()
        tag = max(self.apple_update_tag + 1, int(now.timestamp() * 1000))
        CardWalletState.objects.filter(pk=self.pk).update(
            apple_pass_data=data, apple_update_tag=tag, apple_updated_at=now
        )
        self.apple_pass_data, self.apple_update_tag, self.apple_updated_at = data, tag, now
        return tag


class AppleDeviceRegistration(models.Model):
    """A device that added a pass and asked to be told about updates."""

    device_library_id = models.CharField(max_length=255)
    # APNs tokens are 64 hex characters today, but Apple says not to rely on a length.
    push_token = models.TextField()
    state = models.ForeignKey(
        CardWalletState, on_delete=models.CASCADE, related_name="registrations"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["device_library_id", "state"], name="apple_registration_unique"
            ),
        ]

    def __str__(self):
        return f"Device {self.device_library_id[:8]}… for card {self.state.card_id}"
