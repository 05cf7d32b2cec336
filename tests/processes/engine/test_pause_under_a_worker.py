"""`manage.py pause_job` and `resume_job` under a running `process_email_jobs --loop`
worker, all in real processes on the test database (SQLite, PostgreSQL, MariaDB) with a
real SMTP sink: the pause stops the worker's batch before its next email and it sends
nothing more while paused, the company's next job goes ahead, and after the resume the
job completes with every recipient reached exactly once and nothing left unknown."""

import collections
import signal
import subprocess
import sys
import time

import pytest

from bulkjobs.models import JobAction, Status
from cards.models import Company
from emails.models import BulkEmailJob
from tests.conftest import MANAGE, make_email_job, start_processor, subprocess_env, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def manage(env, *args):
    return subprocess.run(
        [sys.executable, MANAGE, *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_pause_and_resume_commands_under_a_running_worker(smtp_sink, tmp_path):
    company = Company.objects.create(name="Steady", slug="steady")
    job = make_email_job(company, [f"n{n}@example.net" for n in range(300)], subject="News")
    # Slow enough that the pause lands in the middle of a batch.
    smtp_sink.delay = 0.02
    env = subprocess_env(tmp_path, smtp_sink.port, BULKJOBS_EMAIL_COMPANY_RATE="0")
    worker = start_processor(env, "--loop", "--sleep", "0.2", "--batch-size", "100")
    try:
        assert wait_until(lambda: len(smtp_sink.messages) >= 20, timeout=60, interval=0.02)
        paused = manage(env, "pause_job", "email", str(job.pk))
        assert paused.returncode == 0, paused.stderr[-2000:]
        assert paused.stdout.startswith(f"Paused email job {job.pk} after ")
        # The batch in flight stops before its next email (one in hand at most) and
        # releases its claim.
        assert wait_until(
            lambda: BulkEmailJob.objects.get(pk=job.pk).claim_token is None, timeout=30
        )
        sent_when_paused = len(smtp_sink.messages)
        urgent = make_email_job(company, ["urgent@example.org"], subject="Urgent")
        assert wait_until(
            lambda: BulkEmailJob.objects.get(pk=urgent.pk).status == Status.COMPLETED,
            timeout=60,
        )
        time.sleep(1.5)  # several loops of the worker
        assert len(smtp_sink.messages) == sent_when_paused + 1  # the urgent email only
        job.refresh_from_db()
        assert job.status == Status.PAUSED
        assert job.items.filter(status=Status.PROCESSING).count() == 0
        assert job.items.filter(status=Status.COMPLETED).count() == job.succeeded_items

        resumed = manage(env, "resume_job", "email", str(job.pk))
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert wait_until(
            lambda: BulkEmailJob.objects.get(pk=job.pk).status == Status.COMPLETED, timeout=120
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        stdout, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr[-2000:]
    job.refresh_from_db()
    assert (job.succeeded_items, job.failed_items) == (300, 0)
    delivered = collections.Counter(smtp_sink.recipients())
    assert all(delivered[f"n{n}@example.net"] == 1 for n in range(300))
    assert [a.who() for a in JobAction.objects.for_job("email", job.pk)] == [
        "command resume_job",
        "command pause_job",
    ]
