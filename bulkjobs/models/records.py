"""The engine's own records: processor runs, rate buckets, alerts, hourly activity and
job counts."""

from django.conf import settings
from django.db import models
from django.utils import timezone


class ProcessorRun(models.Model):
    """When each kind's processing command last ran; shown on the dashboard's health line."""

    kind = models.CharField(max_length=30, unique=True)
    last_started_at = models.DateTimeField()
    # Seconds between the starts of consecutive runs (cron: about 60; workers looping:
    # less), smoothed over the last runs; the schedule behind a job's "time left".
    # Gaps longer than BULKJOBS_RUN_GAP_SECONDS (no processor running) are left out.
    interval_seconds = models.FloatField(null=True, blank=True)
    last_finished_at = models.DateTimeField(null=True, blank=True)
    last_summary = models.CharField(max_length=300, blank=True)
    # Companies with active jobs of this kind (all tenants) when the last run finished:
    # they share the runs, so it feeds a job's "time left". Counted once per run by the
    # run's closing UPDATE, so the dashboard's polls never count other tenants' jobs.
    companies_with_work = models.PositiveIntegerField(null=True, blank=True)
    # The database server's identity when the last run started (engine/clock.py): a run
    # that finds another one knows the database failed over (or was restored), and that
    # every claim it holds was made before.
    database_identity = models.CharField(max_length=100, blank=True, default="", db_default="")
    # Whether, when the last run started, each committed write (an item's mark before its
    # side effect) was on every standby too (engine/clock.py): read after a failover to
    # tell whether the new primary may lack marks of items already processed.
    marks_durable = models.BooleanField(null=True, blank=True)
    # How far the clock of the last run's host was off the database's (seconds; positive:
    # behind): the engine goes by the database's, but the health line says so.
    clock_skew_seconds = models.FloatField(default=0.0, db_default=0.0)

    def __str__(self):
        return f"{self.kind} last ran {self.last_started_at:%Y-%m-%d %H:%M:%S}"


class Worker(models.Model):
    """A processing command while it runs (a cron run or a --loop worker): the owner of
    the claims it takes (BulkJob.claim_owner).

    Registered when the command starts and removed when it ends; a thread of its own
    refreshes `heartbeat_at` (the database's time) every few seconds, so a process that
    died or stopped is told from a busy one within WORKER_TIMEOUT_SECONDS, and the next
    run releases its claims (bulkjobs/engine/rescue.py) instead of waiting for the stuck
    rule. See bulkjobs/engine/workers.py.
    """

    kind = models.CharField(max_length=30)
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    heartbeat_at = models.DateTimeField()
    # This host's clock against the database's at the last heartbeat (seconds; positive:
    # the host is behind).
    clock_skew_seconds = models.FloatField(default=0.0, db_default=0.0)

    class Meta:
        db_table = "bulkjobs_worker"
        indexes = [
            # Serves the rescue's "is the claim's owner alive?": WHERE id = ? AND
            # heartbeat_at >= ? (the primary key), and the start's look for dead workers of
            # the same host: WHERE host = ?.
            models.Index(fields=["host"], name="worker_host_idx"),
        ]

    def __str__(self):
        return f"{self.kind} worker {self.host}:{self.pid}"


class RateBucket(models.Model):
    """One shared rate limit (a company's pace, a provider's quota); see bulkjobs/engine/ratelimit.py.

    `tat` is the bucket's theoretical arrival time in Unix seconds: the moment by which
    every token taken so far has been paid for at the limit's rate.
    """

    key = models.CharField(max_length=100, unique=True)
    tat = models.FloatField(default=0.0)

    def __str__(self):
        return self.key


class AlertEvent(models.Model):
    """An event someone was (or will be, in the daily digest) told about; see bulkjobs/ops/alerts.py.

    The unique constraint is what makes an alert go out once: every process that sees
    the event tries to insert its row, and only the one whose insert succeeds sends.
    """

    class Event(models.TextChoices):
        JOB_FAILURES = "job_failures", "Job finished with failures"
        JOB_EXPIRED = "job_expired", "Job expired"
        JOB_PAUSED = "job_paused", "Job paused too long"
        PROCESSOR_STALE = "processor_stale", "Processor not running"

    event = models.CharField(max_length=20, choices=Event.choices)
    #: The job kind (email, wallet) of the job, or the processor that stopped.
    source = models.CharField(max_length=30)
    #: The job's id; 0 for a processor.
    object_id = models.BigIntegerField(default=0)
    #: When it happened: the job's finished_at or paused_at, the processor's last start
    #: (so a processor that stops again after running is a new event).
    occurred_at = models.DateTimeField()
    company = models.ForeignKey(
        "cards.Company", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    #: One line for people (no email addresses: it goes to logs and webhooks too).
    text = models.CharField(max_length=500)
    created_at = models.DateTimeField(default=timezone.now)
    #: When its email (or the digest listing it) went out; empty while it waits for
    #: the digest.
    notified_at = models.DateTimeField(null=True, blank=True)
    #: Why its email could not be sent (it is not retried: better one alert lost than
    #: the same alert repeated every minute while the mail server misbehaves).
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        constraints = [
            # Its index also serves the runs' "alerted already?" lookups, which know the
            # source and object: WHERE source = ? AND object_id = ? [AND event = ? ...].
            models.UniqueConstraint(
                fields=["source", "object_id", "event", "occurred_at"], name="alert_once_per_event"
            ),
        ]
        indexes = [
            # Serves the digest: WHERE notified_at IS NULL AND created_at < ?.
            models.Index(fields=["notified_at", "created_at"], name="alert_digest_idx"),
        ]

    def __str__(self):
        return self.text


class AlertDigest(models.Model):
    """A daily digest sent to one user; unique per user and day, so it goes out once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    sent_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "day"], name="alert_digest_once_per_day"),
        ]

    def __str__(self):
        return f"digest for user {self.user_id} on {self.day}"


class ActivityHour(models.Model):
    """Items a company's batches finished per kind and hour (UTC, the hour's start).

    The source of the activity charts and summary numbers, and of the measured time per
    item behind "time left": reading a month of it is at most 744 rows per kind, however
    many jobs and items there are. Written by one upsert per batch
    (bulkjobs.engine.activity.record_batch_activity).
    """

    company = models.ForeignKey("cards.Company", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=30)
    hour = models.DateTimeField()
    #: items that reached an outcome (succeeded or failed)
    processed = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    #: attempts made, retries to come included
    attempts = models.PositiveIntegerField(default=0)
    #: wall-clock seconds the batches spent working on these attempts
    busy_seconds = models.FloatField(default=0.0)

    class Meta:
        db_table = "bulkjobs_activity_hour"
        constraints = [
            # The upsert's conflict target; also serves the charts' query:
            # WHERE company_id = ? AND hour >= ? (both kinds).
            models.UniqueConstraint(
                fields=["company", "kind", "hour"], name="activity_hour_one_row_per_hour"
            ),
        ]

    def __str__(self):
        return f"{self.kind} {self.hour:%Y-%m-%d %H:00}: {self.processed} processed"


class JobCount(models.Model):
    """How many jobs of a kind a company has, and a version that moves whenever one of
    them is created or deleted.

    The dashboard's paginator count and the finished-jobs part of its ETag, without a
    COUNT(*) over a company's 100,000 jobs on every poll. Kept by bulkjobs.web.jobcounts
    (signal receivers connected when a kind registers); a missing row is filled in from
    a real COUNT the first time it is needed.
    """

    company = models.ForeignKey("cards.Company", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=30)
    # Signed, so a delete that somehow outran its create can never fail the delete.
    jobs = models.IntegerField(default=0)
    version = models.BigIntegerField(default=0)

    class Meta:
        db_table = "bulkjobs_job_count"
        constraints = [
            models.UniqueConstraint(fields=["company", "kind"], name="job_count_one_row_per_kind"),
        ]

    def __str__(self):
        return f"{self.kind} jobs of company {self.company_id}: {self.jobs}"
