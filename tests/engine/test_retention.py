"""`manage.py prune_jobs`: finished jobs older than the cutoff go with their items, in
chunks; active and recent jobs, and the suppression list, stay."""

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bulkjobs.kinds import get_kind
from bulkjobs.models import AlertEvent, Status
from bulkjobs.ops import retention
from emails.models import BulkEmailJob, BulkEmailJobItem, EmailSuppression
from tests.conftest import make_cards, make_email_job
from wallet.models import BulkWalletApiJob, BulkWalletApiJobItem

pytestmark = pytest.mark.django_db


def finished(job, days_ago, status=Status.COMPLETED, failed=0):
    """Settle a job and its items as a run would have, `days_ago` days ago."""
    at = timezone.now() - timedelta(days=days_ago)
    type(job).objects.filter(pk=job.pk).update(status=status, finished_at=at, failed_items=failed)
    job.items.update(status=Status.COMPLETED if status == Status.COMPLETED else status)
    return job


def prune(*args):
    out = StringIO()
    call_command("prune_jobs", *args, stdout=out)
    return out.getvalue().strip()


@pytest.fixture
def jobs(company):
    old = [finished(make_email_job(company, 25), 200), finished(make_email_job(company, 3), 181)]
    failed = finished(make_email_job(company, 4), 300, Status.FAILED, failed=4)
    cancelled = finished(make_email_job(company, 2), 190, Status.CANCELLED)
    recent = finished(make_email_job(company, 5), 179)
    # Active jobs are never touched, however old.
    pending = make_email_job(company, 6)
    processing = make_email_job(company, 7)
    long_ago = timezone.now() - timedelta(days=400)
    BulkEmailJob.objects.filter(pk__in=[pending.pk, processing.pk]).update(created_at=long_ago)
    BulkEmailJob.objects.filter(pk=processing.pk).update(
        status=Status.PROCESSING, started_at=long_ago
    )
    wallet_job = BulkWalletApiJob.objects.create(
        company=company, status=Status.COMPLETED, finished_at=long_ago, total_items=2
    )
    BulkWalletApiJobItem.objects.bulk_create(
        [BulkWalletApiJobItem(job=wallet_job, card=card) for card in make_cards(company, 2)]
    )
    return {
        "gone": [*old, failed, cancelled],
        "kept": [recent, pending, processing],
        "wallet": wallet_job,
    }


def test_prune_deletes_old_finished_jobs_and_their_items_only(company, jobs):
    EmailSuppression.objects.create(company=company, email="r0.c1@example.net", reason="bounced")
    output = prune("--older-than", "180d", "--chunk-size", "7")
    assert output.startswith(
        "Deleted 4 email job(s) with 34 item(s), 1 wallet job(s) with 2 item(s) finished before"
    )
    assert output.endswith("(older than 180d).")
    assert set(BulkEmailJob.objects.values_list("pk", flat=True)) == {j.pk for j in jobs["kept"]}
    assert BulkEmailJobItem.objects.count() == 5 + 6 + 7
    assert not BulkWalletApiJob.objects.exists() and not BulkWalletApiJobItem.objects.exists()
    assert EmailSuppression.objects.count() == 1
    assert prune("--older-than", "180d").startswith("Deleted 0 email job(s) with 0 item(s)")


def test_items_are_deleted_a_chunk_per_transaction(company):
    job = finished(make_email_job(company, 25), 200)
    with CaptureQueriesContext(connection) as captured:
        retention.prune(get_kind("email"), timezone.now(), items_per_transaction=10)
    deletes = [q["sql"] for q in captured if q["sql"].startswith("DELETE")]
    chunks = [sql for sql in deletes if re.search(r"items[`\"]\.[`\"]id[`\"] IN", sql)]
    assert [sql.count(",") + 1 for sql in chunks] == [10, 10, 5]
    assert not BulkEmailJob.objects.filter(pk=job.pk).exists()


def test_dry_run_counts_and_deletes_nothing(company, jobs):
    output = prune("--older-than", "180d", "--dry-run")
    assert output.startswith(
        "Would delete 4 email job(s) with 34 item(s), 1 wallet job(s) with 2 item(s) finished"
    )
    assert BulkEmailJob.objects.count() == 7


def test_the_default_age_is_the_setting(company, jobs, settings):
    settings.BULKJOBS = {**settings.BULKJOBS, "RETENTION_DAYS": "185"}
    output = prune()
    assert output.startswith("Deleted 3 email job(s) with 31 item(s)")  # not the 181-day one
    assert output.endswith("(older than 185d).")


def test_hours_and_bad_ages(company):
    job = make_email_job(company, 1)
    BulkEmailJob.objects.filter(pk=job.pk).update(
        status=Status.COMPLETED, finished_at=timezone.now() - timedelta(hours=13)
    )
    assert prune("--older-than", "12h").startswith("Deleted 1 email job(s) with 1 item(s)")
    for bad, message in [
        ("180", "like 180d or 12h"),
        ("3w", "like 180d or 12h"),
        ("0h", "at least 1 hour"),
    ]:
        with pytest.raises(CommandError, match=message):
            prune("--older-than", bad)


def test_a_job_being_pruned_cannot_be_reopened_and_an_active_one_is_not_pruned(company):
    jobs = BulkEmailJob.objects
    job = finished(make_email_job(company, 3), 200, Status.COMPLETED, failed=2)
    cutoff = timezone.now()
    assert jobs.begin_prune(job.pk, cutoff, retention.PRUNING_REASON)
    assert not jobs.reopen_for_retry(job.pk)
    active = make_email_job(company, 3)
    assert not jobs.begin_prune(active.pk, cutoff, retention.PRUNING_REASON)


def test_old_alert_records_go_too(company):
    old = timezone.now() - timedelta(days=200)
    for days, object_id in ((200, 1), (10, 2)):
        AlertEvent.objects.create(
            event=AlertEvent.Event.JOB_FAILURES,
            source="email",
            object_id=object_id,
            occurred_at=old,
            created_at=timezone.now() - timedelta(days=days),
            text="x",
        )
    prune("--older-than", "180d")
    assert list(AlertEvent.objects.values_list("object_id", flat=True)) == [2]
