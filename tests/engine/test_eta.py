""" "Time left" from the real schedule: a table of cases for the pure estimate, and the
dashboard's row using it."""

from datetime import timedelta

import pytest
from django.utils import timezone

from bulkjobs.engine import run_once
from bulkjobs.kinds import get_kind
from bulkjobs.models import ActivityHour, ProcessorRun, Status
from bulkjobs.ops.services import cancel_job
from bulkjobs.web import dashboard
from bulkjobs.web.eta import (
    Schedule,
    batch_seconds,
    items_per_minute,
    items_until_done,
    schedule_for,
    seconds_left,
)
from cards.models import Company
from emails.models import BulkEmailJob
from tests.conftest import make_email_job


@pytest.fixture
def admin_client_for_eta(client, owner):
    client.force_login(owner)
    return client


EMAIL = {"pace_per_minute": 50, "batch_size": 50, "run_interval": 60, "run_budget": 50}


def schedule(**changes):
    values = {**EMAIL, "concurrency": 8, "companies": 1, "seconds_per_item": 0.05}
    return Schedule(**{**values, **changes})


@pytest.mark.parametrize(
    ("remaining", "changes", "minutes"),
    [
        # The case: 4,950 emails at the default 50 a minute.
        (4950, {}, 99),
        (0, {}, 0),
        # The wallet's pace: 10 cards a minute in batches of 10.
        (95, {"pace_per_minute": 10, "batch_size": 10}, 9.5),
        # Workers looping every 10 s: the pace still binds.
        (500, {"run_interval": 10}, 10),
        # No pace: one batch at a time at the provider's speed (20 items a second) binds.
        (1200, {"pace_per_minute": None}, 1),
        # 400 companies share 8 workers: each is served every 2.5 runs (20 items/min).
        (4950, {"companies": 400}, 247.5),
        # A slow provider (2 s per item): a batch takes 100 s, so 30 items a minute.
        (300, {"seconds_per_item": 2}, 10),
        # One worker and 3 companies, batches too slow for more than one a run.
        (100, {"concurrency": 1, "companies": 3, "seconds_per_item": 1}, 6),
    ],
)
def test_estimate_follows_the_schedule(remaining, changes, minutes):
    assert seconds_left(remaining, schedule(**changes)) == round(minutes * 60)


@pytest.mark.parametrize(
    ("remaining", "others", "items"),
    [
        # Alone: its own items.
        (4900, [], 4900),
        # The case: a one-recipient job takes one batch slot of 50 from it.
        (4900, [1], 4950),
        # Another long job takes turns with it all the way.
        (500, [5000], 1000),
        # ... but no more batches than the job itself still needs (10 here, and 1 for
        # the partly filled last one of 460).
        (460, [5000, 120], 460 + 500 + 150),
        # A job nearly done is not held up by long jobs more than one batch each.
        (20, [5000, 5000], 120),
        (0, [5000], 0),
    ],
)
def test_jobs_taking_turns_count_whole_batches_of_each_other(remaining, others, items):
    assert items_until_done(remaining, others, 50) == items


def test_a_batch_slot_lasts_a_minute_at_the_default_pace():
    assert batch_seconds(schedule()) == 60
    assert batch_seconds(schedule(pace_per_minute=10, batch_size=10)) == 60
    assert batch_seconds(schedule(pace_per_minute=None)) == 2.5


def test_more_companies_never_make_a_job_faster():
    rates = [items_per_minute(schedule(companies=n)) for n in (1, 8, 50, 200, 1000)]
    assert rates == sorted(rates, reverse=True)


@pytest.mark.django_db
def test_schedule_reads_the_settings(settings):
    settings.BULKJOBS = {"EMAIL_COMPANY_RATE": "120/h", "EMAIL_BATCH_SIZE": 20}
    s = schedule_for(get_kind("email"), companies=0)
    assert (s.pace_per_minute, s.batch_size, s.run_interval, s.companies) == (2, 20, 60, 1)


@pytest.mark.django_db
def test_dashboard_row_shows_99_minutes_for_4950_emails_at_50_a_minute(company):
    job = make_email_job(company, 1)
    now = timezone.now()
    BulkEmailJob.objects.filter(pk=job.pk).update(
        status=Status.PROCESSING,
        started_at=now - timedelta(minutes=1),
        total_items=5000,
        succeeded_items=50,
    )
    ProcessorRun.objects.create(kind="email", last_started_at=now, interval_seconds=60)
    [section] = [s for s in dashboard.sections(company, {}, now) if s.kind.name == "email"]
    row = section.rows[0]
    assert row["seconds_left"] == 99 * 60
    assert row["time_left"] == "about 1 h 39 min"


@pytest.mark.django_db
def test_job_page_uses_the_measured_time_per_item(company, admin_client_for_eta):
    job = make_email_job(company, 1)
    now = timezone.now()
    BulkEmailJob.objects.filter(pk=job.pk).update(
        status=Status.PROCESSING, started_at=now, total_items=301, succeeded_items=1
    )
    # Batches of this company took 2 s per email: 30 a minute, below the pace of 50.
    ActivityHour.objects.create(
        company=company, kind="email", hour=now, processed=10, attempts=10, busy_seconds=20
    )
    page = admin_client_for_eta.get(f"/background-jobs/email/{job.pk}/").content.decode()
    assert "Time left</dt><dd>about 10 min" in page


@pytest.mark.django_db
def test_runs_measure_their_interval(email_kind, database_time):
    def interval():
        return ProcessorRun.objects.get(kind="email").interval_seconds

    # Each interval is the time passed plus the test's own fraction of a second.
    run_once(email_kind)
    database_time.shift(timedelta(seconds=60))
    run_once(email_kind)
    assert interval() == pytest.approx(60, abs=1)
    database_time.shift(timedelta(seconds=30))
    run_once(email_kind)
    assert interval() == pytest.approx(51, abs=1)
    database_time.shift(timedelta(hours=1))  # the processor was down: not the schedule
    run_once(email_kind)
    assert interval() == pytest.approx(51, abs=1)


@pytest.mark.django_db
def test_runs_count_the_companies_with_work_when_they_finish(company, other_company, email_kind):
    make_email_job(company, 1)  # done in this run
    # More than a batch (50): after their first batch both still have work.
    waiting = [make_email_job(other_company, 60)]
    waiting.append(make_email_job(Company.objects.create(name="Initech", slug="initech"), 60))
    run_once(email_kind)
    assert ProcessorRun.objects.get(kind="email").companies_with_work == 2
    for job in waiting:
        cancel_job(job, by="test", reason="Cancelled by user")
    run_once(email_kind)
    assert ProcessorRun.objects.get(kind="email").companies_with_work == 0


def running_job(company, total, done):
    job = make_email_job(company, 1)
    BulkEmailJob.objects.filter(pk=job.pk).update(
        status=Status.PROCESSING,
        started_at=timezone.now(),
        total_items=total,
        succeeded_items=done,
    )
    return job


@pytest.mark.django_db
def test_time_left_shares_the_runs_with_the_companies_the_last_run_counted(
    company, other_company, email_kind
):
    job = running_job(company, 5000, 50)
    # Another tenant's work the last run did not see yet is not counted by the page:
    # the poll reads the processor's count instead of counting every tenant's jobs.
    make_email_job(other_company, 3)
    now = timezone.now()
    run = ProcessorRun.objects.create(
        kind="email", last_started_at=now, interval_seconds=60, companies_with_work=400
    )

    def shown():
        [section] = [s for s in dashboard.sections(company, {}, now) if s.kind.name == "email"]
        [row] = [r for r in section.rows if r["id"] == job.pk]
        return row["seconds_left"]

    def expected(companies):
        return seconds_left(4950, schedule_for(email_kind, run_interval=60, companies=companies))

    assert shown() == expected(400) > expected(1)
    # Not counted yet (a processor from before the count was recorded): this company alone.
    run.companies_with_work = None
    run.save()
    assert shown() == expected(1)
