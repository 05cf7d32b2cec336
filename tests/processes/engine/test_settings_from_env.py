"""BULKJOBS_* environment variables as a processing command reads them (in a subprocess)."""

import subprocess
import sys
from datetime import timedelta

import pytest
from django.utils import timezone

from bulkjobs.models import Status
from emails.models import BulkEmailJob
from tests.conftest import make_email_job, subprocess_env

pytestmark = pytest.mark.django_db(transaction=True)


def process_email_jobs(tmp_path, smtp_port, **env):
    return subprocess.run(
        [sys.executable, "manage.py", "process_email_jobs", "--max-seconds", "5"],
        env=subprocess_env(tmp_path, smtp_port, **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_decimal_minutes_are_accepted_and_used(company, smtp_sink, tmp_path):
    job = make_email_job(company, 2)
    # A claim whose heartbeat is 45 s old: stuck after half a minute, not after ten.
    BulkEmailJob.objects.filter(pk=job.pk).update(
        status=Status.PROCESSING,
        claim_token="dead-run",
        heartbeat_at=timezone.now() - timedelta(seconds=45),
    )
    result = process_email_jobs(
        tmp_path,
        smtp_sink.port,
        BULKJOBS_STUCK_MINUTES="0.5",
        BULKJOBS_INACTIVE_MINUTES="45.5",
        BULKJOBS_PAUSE_LIMIT_HOURS="1.5",
        # A 30 s stuck limit needs provider timeouts of 10 s at most (bulkjobs.E001).
        EMAIL_TIMEOUT="10",
        GOOGLE_WALLET_TIMEOUT="10",
    )
    assert result.returncode == 0, result.stderr
    assert "1 stuck claim(s) released" in result.stdout
    job.refresh_from_db()
    assert job.status == Status.COMPLETED
    assert len(smtp_sink.messages) == 2


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("BULKJOBS_EMAIL_BATCH_SIZE", "2.5", "BULKJOBS_EMAIL_BATCH_SIZE must be a whole number"),
        ("BULKJOBS_MAX_ATTEMPTS", "0", "BULKJOBS_MAX_ATTEMPTS must be a whole number"),
        ("BULKJOBS_STUCK_MINUTES", "ten", "BULKJOBS_STUCK_MINUTES must be a positive number"),
        ("BULKJOBS_EMAIL_CONCURRENCY", "0", "BULKJOBS_EMAIL_CONCURRENCY must be a whole number"),
        ("BULKJOBS_MARK_AHEAD", "0", "BULKJOBS_MARK_AHEAD must be a whole number of at least 1"),
        ("BULKJOBS_EMAIL_COMPANY_RATE", "fast", "BULKJOBS_EMAIL_COMPANY_RATE must look like"),
        ("EMAIL_RATE_LIMIT", "lots", "EMAIL_RATE_LIMIT must look like '50/min', '20/s'"),
        (
            "BULKJOBS_STUCK_MINUTES",
            "0.2",
            "BULKJOBS_STUCK_MINUTES = 0.2 (12 s) is too short for EMAIL_TIMEOUT = 20 s:",
        ),
    ],
)
def test_a_bad_value_is_refused_with_its_name(company, tmp_path, name, value, message):
    # A job waiting, so settings read only when a batch starts are read too.
    make_email_job(company, 1)
    result = process_email_jobs(tmp_path, 9, **{name: value})
    assert result.returncode == 1
    # One line for cron's mail, naming the setting and what to put; no traceback.
    assert result.stderr.startswith(f"CommandError: {message}"), result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_the_company_rate_comes_from_the_environment(company, smtp_sink, tmp_path):
    job = make_email_job(company, 3)
    result = process_email_jobs(tmp_path, smtp_sink.port, BULKJOBS_EMAIL_COMPANY_RATE="2/h")
    assert result.returncode == 0, result.stderr
    assert "Waiting for the company's pace (2/h); next slot at" in result.stdout
    job.refresh_from_db()
    assert job.succeeded_items == 2 and len(smtp_sink.messages) == 2
