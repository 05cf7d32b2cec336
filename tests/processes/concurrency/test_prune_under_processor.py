"""prune_jobs while a processor works: the old finished jobs go, the running job is not
disturbed (every email sent once, its items and counters intact). Real processes on the
test database, on SQLite, PostgreSQL and MariaDB alike."""

import signal
import subprocess
import sys
from datetime import timedelta

import pytest
from django.utils import timezone

from bulkjobs.models import Status
from cards.models import Company
from emails.models import BulkEmailJob, BulkEmailJobItem
from tests.conftest import MANAGE, make_email_job, start_processor, subprocess_env, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

#: The running job's emails, against a relay 20 ms away: a few seconds of sending, longer
#: than the pruner takes to start and delete, however fast the processor has become (at
#: 150 emails 10 ms away it sometimes finished first).
EMAILS = 300


def test_pruning_while_a_processor_runs(smtp_sink, tmp_path):
    busy = Company.objects.create(name="Busy", slug="busy")
    archive = Company.objects.create(name="Archive", slug="archive")
    running = make_email_job(busy, EMAILS)
    old = [make_email_job(company, 60) for company in (busy, archive) for _ in range(4)]
    long_ago = timezone.now() - timedelta(days=400)
    for job in old:
        BulkEmailJob.objects.filter(pk=job.pk).update(
            status=Status.COMPLETED, finished_at=long_ago, created_at=long_ago
        )
        job.items.update(status=Status.COMPLETED)
    # Queued a long time ago but never finished: not the pruner's business.
    BulkEmailJob.objects.filter(pk=running.pk).update(created_at=long_ago)

    smtp_sink.delay = 0.02
    env = subprocess_env(tmp_path, smtp_sink.port, BULKJOBS_EMAIL_COMPANY_RATE="0")
    worker = start_processor(env, "--loop", "--sleep", "0.2", "--batch-size", "10")
    try:
        assert wait_until(lambda: len(smtp_sink.messages) >= 10, timeout=60, interval=0.05)
        pruner = subprocess.run(
            [sys.executable, MANAGE, "prune_jobs", "--older-than", "30d", "--chunk-size", "25"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        pruned_while_sending = len(smtp_sink.messages) < EMAILS
        finished = wait_until(
            lambda: BulkEmailJob.objects.filter(pk=running.pk, status=Status.COMPLETED).exists(),
            timeout=120,
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        stdout, stderr = worker.communicate(timeout=30)
    assert pruner.returncode == 0, pruner.stderr[-2000:]
    assert pruner.stdout.startswith("Deleted 8 email job(s) with 480 item(s)")
    assert pruned_while_sending, "the processor finished before the pruner ran"
    assert finished, stderr[-2000:]
    assert worker.returncode == 0, stderr[-2000:]

    assert list(BulkEmailJob.objects.values_list("pk", flat=True)) == [running.pk]
    running.refresh_from_db()
    assert (running.succeeded_items, running.failed_items) == (EMAILS, 0)
    assert BulkEmailJobItem.objects.filter(job=running, status=Status.COMPLETED).count() == EMAILS
    assert BulkEmailJobItem.objects.count() == EMAILS
    recipients = smtp_sink.recipients()
    assert len(recipients) == len(set(recipients)) == EMAILS
