"""`process_email_jobs --until-empty`: batches until no job has work due now, then exit 0.

Real processes against the test database (so transactional tests) and a real SMTP sink:
the loop closes its database connections between runs, as a worker must.
"""

import subprocess
import sys
import time

import pytest

from bulkjobs.models import Status
from cards.models import Company
from emails.models import BulkEmailJob, BulkEmailJobItem
from tests.conftest import MANAGE, make_email_job, subprocess_env

pytestmark = pytest.mark.django_db(transaction=True)


def process(env, *args, timeout=120):
    done = subprocess.run(
        [sys.executable, MANAGE, "process_email_jobs", "--until-empty", "--sleep", "0.1", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_it_runs_batches_until_every_job_is_done(company, smtp_sink, tmp_path):
    other = Company.objects.create(name="Globex", slug="globex")
    jobs = [make_email_job(company, 120), make_email_job(company, 30), make_email_job(other, 70)]
    env = subprocess_env(tmp_path, smtp_sink.port, BULKJOBS_EMAIL_COMPANY_RATE="0")
    output = process(env, "--batch-size", "20", "--max-seconds", "0.01")
    assert output.strip().endswith("No work due now; stopped.")
    # Each run was cut short by its tiny budget, so it took many runs.
    assert output.count("succeeded") > 5
    assert len(smtp_sink.messages) == 220
    for job in jobs:
        job.refresh_from_db()
        assert job.status == Status.COMPLETED


def test_a_worker_keeps_its_mail_connections_from_run_to_run_and_quits_them_at_exit(
    company, smtp_sink, tmp_path
):
    other = Company.objects.create(name="Globex", slug="globex")
    make_email_job(company, 60)
    make_email_job(other, 60)
    env = subprocess_env(tmp_path, smtp_sink.port, BULKJOBS_EMAIL_COMPANY_RATE="0")
    output = process(env, "--batch-size", "10", "--concurrency", "1", "--max-seconds", "0.01")
    assert output.count("succeeded") >= 6  # a run per batch at least
    assert len(smtp_sink.messages) == 120
    # Twelve batches, over the one connection the first opened (emails/connections.py),
    # ended with QUIT when the process exited.
    assert smtp_sink.greetings == 1
    assert smtp_sink.quits == 1


def test_work_held_back_by_a_rate_limit_is_waited_for(company, smtp_sink, tmp_path):
    make_email_job(company, 30)
    env = subprocess_env(tmp_path, smtp_sink.port, BULKJOBS_EMAIL_COMPANY_RATE="20/s")
    process(env)
    assert len(smtp_sink.messages) == 30


def test_retries_not_yet_due_do_not_keep_it_running(company, smtp_sink, tmp_path):
    job = make_email_job(company, ["tempfail@example.org", "a@example.org"])
    started = time.monotonic()
    output = process(subprocess_env(tmp_path, smtp_sink.port))
    assert time.monotonic() - started < 25  # the retry is 30 s or more away
    assert output.strip().endswith("No work due now; stopped.")
    item = BulkEmailJobItem.objects.get(job=job, recipient_email="tempfail@example.org")
    assert item.status == Status.PENDING and item.next_attempt_at is not None
    assert smtp_sink.recipients() == ["a@example.org"]


def test_a_paused_job_does_not_keep_it_running(company, tmp_path):
    job = make_email_job(company, 3)
    env = subprocess_env(tmp_path, 9)  # nothing listens there: the job pauses
    output = process(env)
    assert output.strip() == "No work due now; stopped."
    assert BulkEmailJob.objects.get(pk=job.pk).is_paused


def test_only_the_given_companies_count(company, smtp_sink, tmp_path):
    other = Company.objects.create(name="Globex", slug="globex")
    make_email_job(other, 5)
    output = process(subprocess_env(tmp_path, smtp_sink.port), "--company", "acme")
    assert output.strip() == "No work due now; stopped."
    assert smtp_sink.messages == []
