"""A single `process_email_jobs --loop` worker keeps serving every company while a
forgotten transaction in another session holds one company's job row, and serves that
company as soon as the transaction ends."""

import signal

import pytest

from bulkjobs.models import Status
from cards.models import Company
from emails.models import BulkEmailJob, BulkEmailJobItem
from tests.concurrency.test_row_locks import Blocker, server_database
from tests.conftest import make_email_job, start_processor, subprocess_env, wait_until

pytestmark = [pytest.mark.server_db, pytest.mark.django_db(transaction=True)]

__all__ = ["server_database"]  # a fixture used below


def completed(job):
    return not BulkEmailJobItem.objects.filter(job_id=job.pk).exclude(status=Status.COMPLETED)


def test_a_worker_serves_every_other_company_while_one_job_row_is_locked(
    server_database, smtp_sink, tmp_path
):
    jobs = [
        make_email_job(Company.objects.create(name=f"Company {n}", slug=f"company-{n}"), 20)
        for n in range(4)
    ]
    locked, *others = jobs
    blocker = Blocker().lock(BulkEmailJob, locked.pk)
    pid = blocker.pid
    env = subprocess_env(
        tmp_path,
        smtp_sink.port,
        BULKJOBS_EMAIL_CONCURRENCY="1",
        BULKJOBS_EMAIL_COMPANY_RATE="0",
        BULKJOBS_LOCK_TIMEOUT_SECONDS="1",
    )
    worker = start_processor(env, "--loop", "--sleep", "0.2", "--batch-size", "5")
    try:
        served = wait_until(lambda: all(completed(job) for job in others), timeout=60)
        untouched = BulkEmailJobItem.objects.filter(job_id=locked.pk, status=Status.PENDING)
        assert untouched.count() == 20
        blocker.rollback()
        blocker = None
        finished = wait_until(lambda: completed(locked), timeout=60)
    finally:
        if blocker is not None:
            blocker.rollback()
        worker.send_signal(signal.SIGTERM)
        _stdout, stderr = worker.communicate(timeout=30)
    assert served, "the other companies were not served while one job row was locked"
    assert finished, "the locked company was not served once its row was free"
    assert worker.returncode == 0, stderr[-2000:]
    recipients = smtp_sink.recipients()
    assert len(recipients) == len(set(recipients)) == 80
    log = (tmp_path / "app.log").read_text()
    lines = [line for line in log.splitlines() if f"Job {locked.pk}: locked by" in line]
    # Once, however many runs found it locked, with the session in the way.
    assert len(lines) == 1, lines
    assert f" {pid} (" in lines[0]
    assert "Traceback" not in log
