"""The engine goes by the database's clock: a host whose clock is 15 minutes off neither
steals another run's claim, nor expires jobs early, nor runs the run-gap rule away, nor
starves the other hosts through the rate buckets.

time_machine moves this process's clock only; the database's (SQLite's C library's,
PostgreSQL's, MariaDB's) stays where it is: that is what a skewed host looks like.
"""

import logging
import re
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from bulkjobs import engine
from bulkjobs.engine import clock
from bulkjobs.kinds import get_kind
from bulkjobs.models import ProcessorRun, RateBucket, Status
from emails.models import BulkEmailJob
from tests.conftest import make_email_job

pytestmark = pytest.mark.django_db

SKEWS = [timedelta(minutes=15), -timedelta(minutes=15)]


def on_a_host_off_by(skew):
    return time_machine.travel(timezone.now() + skew, tick=True)


@pytest.mark.parametrize("skew", SKEWS)
def test_a_skewed_host_leaves_a_healthy_claim_alone(company, email_kind, skew):
    make_email_job(company, 3)
    healthy = engine.claim_next_job(email_kind, company.pk)  # heartbeat: now
    with on_a_host_off_by(skew):
        summary = engine.run_once(email_kind)
    assert summary.claims_released == 0 and summary.items_attempted == 0
    assert BulkEmailJob.objects.get(pk=healthy.job.pk).claim_token == healthy.token


@pytest.mark.parametrize("skew", SKEWS)
def test_a_skewed_host_expires_no_job_early_and_writes_the_databases_time(
    company, email_kind, skew, database_time
):
    job = make_email_job(company, 1)
    job.items.update(next_attempt_at=database_time.now() + timedelta(days=1), attempts=1)
    BulkEmailJob.objects.filter(pk=job.pk).update(
        status=Status.PROCESSING, activity_at=database_time.now()
    )
    database_time.shift(timedelta(minutes=20))  # 20 of the 30 minutes of inactivity
    with on_a_host_off_by(skew):
        summary = engine.run_once(email_kind)
    assert summary.jobs_expired == 0
    job.refresh_from_db()
    assert job.status == Status.PROCESSING
    # What the skewed host wrote is the database's time, not its own.
    started = ProcessorRun.objects.get(kind="email").last_started_at
    assert abs(started - database_time.now()) < timedelta(minutes=1)


def test_hosts_taking_turns_do_not_shift_the_clocks_of_running_jobs(
    company, email_kind, database_time, caplog
):
    job = make_email_job(company, 1)
    job.items.update(next_attempt_at=database_time.now() + timedelta(days=1), attempts=1)
    BulkEmailJob.objects.filter(pk=job.pk).update(
        status=Status.PROCESSING, activity_at=database_time.now()
    )
    activity_at = BulkEmailJob.objects.get(pk=job.pk).activity_at
    with caplog.at_level(logging.INFO):
        for skew in (timedelta(0), *SKEWS, timedelta(0), *SKEWS):
            with on_a_host_off_by(skew):
                engine.run_once(email_kind)
    # A skew is no gap in which no processor ran: nothing is forgiven, nothing moves.
    assert "inactivity clocks" not in caplog.text
    assert BulkEmailJob.objects.get(pk=job.pk).activity_at == activity_at
    assert ProcessorRun.objects.get(kind="email").interval_seconds < 60


def test_a_host_ahead_does_not_starve_the_others_through_the_rate_buckets(
    company, other_company, email_kind, database_time
):
    # The default pace: 50 a minute per company, in one bucket each, shared by all hosts.
    first = make_email_job(company, 100)
    second = make_email_job(other_company, 100)
    with on_a_host_off_by(timedelta(minutes=15)):
        assert engine.run_once(email_kind).items_succeeded == 100
    # A minute later on a host with the right time, each company has its next 50.
    database_time.shift(timedelta(minutes=1))
    assert engine.run_once(email_kind).items_succeeded == 100
    for job in (first, second):
        job.refresh_from_db()
        assert job.status == Status.COMPLETED
    # No bucket's arrival time is ahead of the database's clock by more than a minute.
    latest = max(RateBucket.objects.values_list("tat", flat=True))
    assert latest - database_time.now().timestamp() <= 60


def test_a_skewed_host_is_reported_once_and_when_it_is_right_again(db, caplog):
    with caplog.at_level(logging.INFO, logger="bulkjobs.clock"):
        with on_a_host_off_by(timedelta(minutes=15)):
            clock.sync()
            clock.sync()
            assert clock.is_skewed(clock.reading().offset)
        clock.sync()
    lines = [r.getMessage() for r in caplog.records if r.name == "bulkjobs.clock"]
    assert len(lines) == 2
    assert re.match(
        r"This host's clock is (14 min 59|15 min 0) s ahead of the database's", lines[0]
    )
    assert lines[1] == "This host's clock agrees with the database's again"


def test_a_skewed_host_shows_on_healthz_check_processors_and_the_operators_health_line(
    company, email_kind, client, capsys
):
    from django.core.management import call_command

    from bulkjobs.web.dashboard import health
    from bulkjobs.web.eta import processor_runs

    with on_a_host_off_by(timedelta(minutes=15)):
        engine.run_once(email_kind)
    engine.run_once(get_kind("wallet"))  # a host with the right time
    answer = client.get("/healthz").json()
    assert answer["status"] == "ok"  # a warning, not a failure: the engine is not affected
    assert -905 <= answer["processors"]["email"]["clock_skew_seconds"] <= -895
    assert abs(answer["processors"]["wallet"]["clock_skew_seconds"]) <= 1
    [warning] = answer["warnings"]
    assert re.fullmatch(
        r"The host of the last email run has a clock (14 min 59|15 min 0) s ahead of the "
        r"database's: set its time \(NTP\)\. The engine goes by the database's\.",
        warning,
    )

    call_command("check_processors", "--no-alerts")
    assert "WARNING: The host of the last email run has a clock" in capsys.readouterr().err

    runs = processor_runs()
    operator_line = health(email_kind, runs, timezone.now(), operator=True).message
    assert "Its host's clock is 15 min off the database's" in operator_line
    assert "clock" not in health(email_kind, runs, timezone.now()).message
