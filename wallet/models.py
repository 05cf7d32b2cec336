"""Bulk wallet sync jobs and items (original table names), per-card wallet state,
Apple device registrations, the PassKit log endpoint's per-client request counts, the
shared APNs provider token and what was last sent for each Google Wallet class."""

import secrets
import uuid
from datetime import timedelta

from django.db import IntegrityError, models, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext_lazy, pgettext_lazy

from bulkjobs.models import BulkJob, BulkJobItem


class BulkWalletApiJob(BulkJob):
    # Jobs the app queues by itself when a card is saved or deleted (wallet/autosync.py),
    # as opposed to a sync someone started; one pending automatic job per company
    # collects the changes of the minute, so several edits give one push.
    automatic = models.BooleanField(default=False, db_default=False, editable=False)

    class Meta(BulkJob.Meta):
        db_table = "bulk_wallet_api_jobs"
        verbose_name = "bulk wallet sync job"


class PlatformResult(models.TextChoices):
    # The item's English reason names these labels ("Google Wallet skipped (not
    # configured)"), so its words come from English (str(label) under override("en")).
    SYNCED = "synced", pgettext_lazy("wallet result", "Synced")
    UNCHANGED = "unchanged", pgettext_lazy("wallet result", "Unchanged")
    SKIPPED = "skipped", pgettext_lazy("wallet result", "Skipped (not configured)")
    FAILED = "failed", pgettext_lazy("wallet result", "Failed")
    # The platform refused this installation's credentials or permissions: its update
    # waits, without spending an attempt, until an operator fixes the setting (the
    # item's detail says which); the other platform goes on meanwhile.
    PAUSED = "paused", pgettext_lazy("wallet result", "Paused (waiting for a settings fix)")


class BulkWalletApiJobItem(BulkJobItem):
    # No index of its own: the batch index (job, status, id) starts with it (as on the
    # email items).
    job = models.ForeignKey(
        BulkWalletApiJob,
        on_delete=models.CASCADE,
        related_name="items",
        db_column="bulk_wallet_api_job_id",
        db_index=False,
    )
    # A card deleted while its job runs fails its item with a reason instead of
    # silently removing it.
    # Verbose names are the job page's and the CSV's column headers: translated.
    card = models.ForeignKey(
        "cards.BusinessCard",
        on_delete=models.SET_NULL,
        null=True,
        related_name="+",
        verbose_name=gettext_lazy("card"),
    )
    # Set on the item that tells the wallets a card was deleted: the card is gone by
    # the time the item runs, its wallet state (voided pass, Google object id) is not.
    voided_state = models.ForeignKey(
        "CardWalletState",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=gettext_lazy("pass of the deleted card"),
    )
    apple_result = models.CharField(
        gettext_lazy("Apple result"), max_length=20, choices=PlatformResult.choices, blank=True
    )
    apple_detail = models.TextField(gettext_lazy("Apple detail"), blank=True)
    google_result = models.CharField(
        gettext_lazy("Google result"), max_length=20, choices=PlatformResult.choices, blank=True
    )
    google_detail = models.TextField(gettext_lazy("Google detail"), blank=True)

    class Meta(BulkJobItem.Meta):
        db_table = "bulk_wallet_api_job_items"
        verbose_name = "bulk wallet sync item"

    def platform_states(self, *, for_staff=False):
        """Each platform's state, for pages to render (one column per platform): a list
        of {"platform", "label", "result", "result_label", "paused", "detail"}, the
        result label and detail in the active language (the detail as the reasons
        registry words it: a paused platform's fix in setting names for operators, in
        plain words for company users). Platforms not tried yet have result ""."""
        from bulkjobs import reasons

        states = []
        for platform, label in (("apple", "Apple Wallet"), ("google", "Google Wallet")):
            result = getattr(self, f"{platform}_result")
            detail = getattr(self, f"{platform}_detail")
            states.append(
                {
                    "platform": platform,
                    "label": label,
                    "result": result,
                    "result_label": str(PlatformResult(result).label) if result else "",
                    "paused": result == PlatformResult.PAUSED,
                    "detail": reasons.describe_text(detail, for_staff=for_staff) if detail else "",
                }
            )
        return states


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

    The stored pass is the one source of truth for every path that hands a pass out (the
    download, the PassKit web service, the sync job; see wallet/apple/store.py): each
    stores a new version only when the card's content changed, and serves the stored
    bytes. A version is identified by its update tag, which is also its ETag.

    The state outlives its card: deleting a card stores a voided pass here, and devices
    that still hold the pass keep fetching it from the web service.
    """

    card = models.OneToOneField(
        "cards.BusinessCard",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="wallet_state",
    )
    apple_serial_number = models.CharField(
        max_length=64, unique=True, default=new_serial_number, editable=False
    )
    apple_auth_token = models.CharField(max_length=100, default=new_auth_token, editable=False)
    # The current version of the signed .pkpass, served by every path.
    apple_pass_data = models.BinaryField(null=True, blank=True)
    # SHA-256 of the stored pass's manifest: what the stored version contains.
    apple_pass_hash = models.CharField(max_length=64, blank=True, default="", db_default="")
    # SHA-256 of the manifest of the last pass whose pushes all went out; a pass stored
    # but not yet fully pushed keeps the old hash, so the sync job pushes it.
    apple_content_hash = models.CharField(max_length=64, blank=True)
    # The version: milliseconds since the epoch, strictly increasing per pass (two stores
    # in one millisecond still differ). Devices send back the largest they saw as
    # passesUpdatedSince, and it is the pass's ETag.
    apple_update_tag = models.BigIntegerField(default=0)
    apple_updated_at = models.DateTimeField(null=True, blank=True)
    # True when the stored version was stored in the same second as the one before it:
    # an If-Modified-Since (whole seconds) then cannot tell the two apart, so the web
    # service sends the pass rather than a 304 that could leave a device on the older.
    apple_shares_second = models.BooleanField(default=False, db_default=False)
    # When the card was deleted and a voided pass stored in its place.
    voided_at = models.DateTimeField(null=True, blank=True)
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
        if self.card_id is None:
            return f"Wallet state {self.pk} (card deleted)"
        return f"Wallet state of card {self.card_id}"

    @property
    def etag(self):
        return f'"{self.apple_update_tag}"'

    @property
    def is_issued(self):
        """Whether anything of the card reached a wallet: a pass or a Google object."""
        return bool(self.apple_pass_data) or bool(self.google_object_id)


class AppleDeviceRegistration(models.Model):
    """A device that added a pass and asked to be told about updates."""

    device_library_id = models.CharField(max_length=255)
    # APNs tokens are 64 hex characters today, but Apple says not to rely on a length.
    push_token = models.TextField()
    state = models.ForeignKey(
        CardWalletState, on_delete=models.CASCADE, related_name="registrations"
    )
    created_at = models.DateTimeField(default=timezone.now)
    # The push token the production APNs once answered BadDeviceToken for, and when.
    # A second refusal of the same token removes the registration; a device that
    # registers again with a new token starts afresh, since the tokens then differ.
    refused_push_token = models.TextField(blank=True, default="", db_default="")
    refused_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["device_library_id", "state"], name="apple_registration_unique"
            ),
        ]

    def __str__(self):
        return f"Device {self.device_library_id[:8]}… for card {self.state.card_id}"


class AppleLogWindowManager(models.Manager):
    def take(self, client, limit, now=None):
        """Count one request of `client` in the current minute; False once it made `limit`.

        Every step is one conditional UPDATE with a row-count check (or the INSERT of a
        new client, settled by the unique index), so requests racing in any number of
        processes never pass the limit together.
        """
        if limit < 1:
            return False
        now = now or timezone.now()
        minute = now.replace(second=0, microsecond=0)
        counted = F("requests") + 1
        if self.filter(client=client, window_start=minute, requests__lt=limit).update(
            requests=counted
        ):
            return True
        if self.filter(client=client, window_start__lt=minute).update(
            window_start=minute, requests=1
        ):
            return True
        if self.filter(client=client).exists():
            return False  # this minute's row exists and is full
        try:
            with transaction.atomic():
                self.create(client=client, window_start=minute, requests=1)
        except IntegrityError:
            # Another request of the same client created the row first: count on it.
            return bool(
                self.filter(client=client, window_start=minute, requests__lt=limit).update(
                    requests=counted
                )
            )
        # A new client is rare next to a known one's request: a good moment to drop the
        # rows of clients that have been quiet for an hour, so the table stays small.
        self.filter(window_start__lt=minute - timedelta(hours=1)).delete()
        return True


class AppleLogWindow(models.Model):
    """How many requests one client sent to the PassKit log endpoint in one minute.

    In the database rather than Django's cache: the app runs as several processes (WSGI
    workers, on one or more hosts) and the default cache is per process, while a shared
    cache server is not something shared hosting offers. One small row per client.
    """

    #: The client's IP address (an IPv6 client's /64 network, which one host controls).
    client = models.CharField(max_length=64, unique=True)
    window_start = models.DateTimeField()
    requests = models.PositiveIntegerField(default=0)

    objects = AppleLogWindowManager()

    class Meta:
        verbose_name = "PassKit log request count"
        indexes = [
            # Serves the clean-up of quiet clients: ... WHERE window_start < ?.
            models.Index(fields=["window_start"], name="wallet_log_window_start_idx"),
        ]

    def __str__(self):
        return f"{self.client}: {self.requests} log request(s) since {self.window_start}"


class ApnsProviderToken(models.Model):
    """The APNs provider token (a signed JWT) that every process on every host uses.

    Apple wants a new token no more often than every 20 minutes and none older than an
    hour; cron starts a new process every minute, so the token lives here rather than in
    memory. wallet/apple/apns_token.py reads it, and replaces it with one conditional UPDATE
    (on the token it saw), so racing processes never mint two.
    """

    team_id = models.CharField(max_length=64)
    key_id = models.CharField(max_length=64)
    # SHA-256 of the key file: a corrected key with the same id gets a token of its own
    # at once instead of reusing one signed by the wrong key.
    key_fingerprint = models.CharField(max_length=64)
    token = models.TextField()
    issued_at = models.DateTimeField()

    class Meta:
        verbose_name = "APNs provider token"
        constraints = [
            models.UniqueConstraint(
                fields=["team_id", "key_id", "key_fingerprint"], name="apns_token_unique"
            ),
        ]

    def __str__(self):
        return f"APNs token of key {self.key_id} (team {self.team_id}), issued {self.issued_at}"


class GoogleWalletClass(models.Model):
    """What was last sent for one Google Wallet class, so that it is sent again only when
    it changed (its settings or the company), not on every batch."""

    class_id = models.CharField(max_length=200, unique=True)
    content_hash = models.CharField(max_length=64)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "Google Wallet class"

    def __str__(self):
        return self.class_id
