"""Abstract job and item models shared by every job kind, plus the processor run record.

A concrete kind (emails.BulkEmailJob, wallet.BulkWalletApiJob) subclasses BulkJob and
BulkJobItem, keeps the original table names, and gives its items a ForeignKey named
`job` with the original column name.
"""

from django.conf import settings
from django.db import models
from django.db.models import Case, F, Q, When
from django.utils import timezone


class Status(models.TextChoices):
    PENDING = "pending", "Pending"
    PROCESSING = "processing", "Processing"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_STATUSES = (Status.PENDING, Status.PROCESSING)
FINISHED_STATUSES = (Status.COMPLETED, Status.FAILED, Status.CANCELLED)


class JobQuerySet(models.QuerySet):
    def active(self):
        """Jobs that still have work: status pending or processing."""
        return self.filter(status__in=ACTIVE_STATUSES)


class BulkJob(models.Model):
    company = models.ForeignKey("cards.Company", on_delete=models.CASCADE, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    reason = models.TextField(blank=True, default="")
    total_items = models.PositiveIntegerField(default=0)
    succeeded_items = models.PositiveIntegerField(default=0)
    failed_items = models.PositiveIntegerField(default=0)
    cancelled_items = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    last_processed_at = models.DateTimeField(null=True, blank=True)
    # Base of the 30-minute inactivity rule: set when the job starts (or restarts) and
    # whenever a batch attempts an item; moved forward by the length of any gap in
    # which no processor ran, so downtime never expires a job.
    activity_at = models.DateTimeField(null=True, blank=True)
    # The claim: which run holds the job now. claimed_at is kept after release and
    # doubles as "last served" for fair ordering between companies.
    # NULL (not "") means unclaimed: the generated column below depends on it.
    claim_token = models.CharField(max_length=32, null=True, blank=True)  # noqa: DJ001
    claimed_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Equals company_id while the job is claimed, NULL otherwise. A unique index on it
    # is how the database itself guarantees one claimed job per company, on SQLite,
    # PostgreSQL and MariaDB alike (MariaDB has no partial unique indexes).
    claimed_company = models.GeneratedField(
        expression=Case(When(claim_token__isnull=False, then=F("company_id"))),
        output_field=models.BigIntegerField(null=True),
        db_persist=True,
    )

    objects = JobQuerySet.as_manager()

    class Meta:
        abstract = True
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["claimed_company"], name="%(app_label)s_%(class)s_one_claim_per_company"
            ),
        ]
        indexes = [
            # Serves the run's "companies with active jobs" and "oldest active job of a
            # company" queries: WHERE status IN (...) [AND company_id = ?] ORDER BY created_at.
            models.Index(fields=["status", "company", "created_at"], name="%(class)s_active_idx"),
            # Serves the dashboard: WHERE company_id = ? ORDER BY created_at DESC.
            models.Index(fields=["company", "-created_at"], name="%(class)s_company_idx"),
            # Serves the rescue of stale claims: WHERE claim_token IS NOT NULL AND heartbeat_at < ?.
            models.Index(fields=["heartbeat_at"], name="%(class)s_heartbeat_idx"),
        ]

    def __str__(self):
        return f"{self._meta.verbose_name} #{self.pk} ({self.status})"

    @property
    def processed_items(self):
        return self.succeeded_items + self.failed_items + self.cancelled_items

    @property
    def percent_done(self):
        if not self.total_items:
            return 100 if self.status in FINISHED_STATUSES else 0
        return min(100, round(100 * self.processed_items / self.total_items))

    @property
    def is_active(self):
        return self.status in ACTIVE_STATUSES


class ItemQuerySet(models.QuerySet):
    def due(self, now):
        """Items a batch may take now: pending, and either never tried or past their backoff."""
        return self.filter(status=Status.PENDING).filter(
            Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
        )


class BulkJobItem(models.Model):
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    reason = models.TextField(blank=True, default="")
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    objects = ItemQuerySet.as_manager()

    class Meta:
        abstract = True
        ordering = ["id"]
        indexes = [
            # Serves the batch query (WHERE job_id = ? AND status = 'pending' ORDER BY id),
            # "anything left?" and the per-status counts.
            models.Index(fields=["job", "status", "id"], name="%(class)s_batch_idx"),
        ]

    def __str__(self):
        return f"{self._meta.verbose_name} #{self.pk} ({self.status})"


class ProcessorRun(models.Model):
    """When each kind's processing command last ran; shown on the dashboard's health line."""

    kind = models.CharField(max_length=30, unique=True)
    last_started_at = models.DateTimeField()
    last_finished_at = models.DateTimeField(null=True, blank=True)
    last_summary = models.CharField(max_length=300, blank=True)

    def __str__(self):
        return f"{self.kind} last ran {self.last_started_at:%Y-%m-%d %H:%M:%S}"


class RateBucket(models.Model):
    """One shared rate limit (a company's pace, a provider's quota); see bulkjobs/ratelimit.py.

    `tat` is the bucket's theoretical arrival time in Unix seconds: the moment by which
    every token taken so far has been paid for at the limit's rate.
    """

    key = models.CharField(max_length=100, unique=True)
    tat = models.FloatField(default=0.0)

    def __str__(self):
        return self.key
