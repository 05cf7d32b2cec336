"""Engine guarantees under real faults (issue 7): a stalled run's settle is fenced, a provider
outage is a pause and not inactivity, the original's manual SQL keeps working, and backoff
does not block a company's queue. Frozen time; plain SQL through connection.cursor()."""

import logging
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from bulkjobs import engine
from bulkjobs.engine.items import Lane
from bulkjobs.kinds import Outcome
from bulkjobs.models import Status
from emails.models import BulkEmailJob
from tests.conftest import make_email_job
from tests.smtp_sink import SmtpSink

pytestmark = pytest.mark.django_db


def sql(statement):
    with connection.cursor() as cursor:
        cursor.execute(statement)


def statuses(job):
    return list(job.items.order_by("id").values_list("status", flat=True))


# --- item 2: the settle after a claim is fenced ---------------------------------------


def test_a_run_that_stalls_after_its_claim_cannot_settle_another_runs_item(
    company, email_kind, database_time
):
    job = make_email_job(company, 3)
    # Run A wins its claim and stalls before settling interrupted items.
    stalled = engine.claim_job(email_kind, company.pk)
    database_time.shift(timedelta(minutes=11))
    summary = engine.RunSummary("email")
    engine.rescue(email_kind, summary)
    assert summary.claims_released == 1
    # Run B claims the job and has an item in flight.
    live = engine.claim_next_job(email_kind, company.pk)
    item = job.items.order_by("id").first()
    assert live.mark(item.pk) == 1
    # A wakes up and settles with its old claim: nothing changes.
    assert engine.settle_interrupted(stalled) == 0
    item.refresh_from_db()
    assert item.status == Status.PROCESSING
    # B records its outcome.
    lane = Lane(engine.Batch(live))
    assert lane.record(item, lane.decide(item, Outcome.done()))
    item.refresh_from_db()
    assert item.status == Status.COMPLETED


# --- item 3: a provider outage is a pause, not inactivity ------------------------------


@pytest.fixture
def mail_server_down(settings):
    """Django's SMTP backend pointed at a loopback port where nothing listens yet; the
    SmtpSink that will listen there is returned unstarted."""
    sink = SmtpSink()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", sink.port, 5
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    yield sink
    if sink.controller._thread is not None:
        sink.stop()


def pause_alerts(caplog):
    return [
        r
        for r in caplog.records
        if r.levelno == logging.ERROR and "Paused, will retry next run" in r.getMessage()
    ]


def test_a_31_minute_mail_outage_pauses_the_job_and_it_resumes(
    company, email_kind, mail_server_down, caplog, database_time
):
    job = make_email_job(company, 3)
    for _minute in range(32):
        summary = engine.run_once(email_kind)
        assert summary.paused and summary.items_attempted == 0
        database_time.shift(timedelta(minutes=1))
    job.refresh_from_db()
    assert job.status == Status.PROCESSING
    # Paused since the first run, 32 minutes ago (give or take the test's own seconds).
    paused_for = database_time.now() - job.paused_at
    assert timedelta(minutes=32) <= paused_for < timedelta(minutes=33)
    assert job.reason.startswith("Paused, will retry next run: cannot connect")
    assert set(statuses(job)) == {Status.PENDING}
    assert len(pause_alerts(caplog)) == 1  # alerted once, when the pause began

    mail_server_down.start()
    summary = engine.run_once(email_kind)
    assert summary.items_succeeded == 3 and not summary.paused
    job.refresh_from_db()
    assert job.status == Status.COMPLETED and job.paused_at is None
    assert len(mail_server_down.messages) == 3


def test_a_pause_longer_than_the_limit_fails_the_job_naming_its_cause(
    company, email_kind, mail_server_down, settings, database_time
):
    # Hourly runs, with the gap allowance raised so they count as a processor that kept
    # running (a longer gap would move the pause clock forward, as downtime does).
    settings.BULKJOBS = {"RUN_GAP_SECONDS": 2 * 3600}
    job = make_email_job(company, 2)
    for _hour in range(24):
        engine.run_once(email_kind)
        database_time.shift(timedelta(hours=1))
    job.refresh_from_db()
    assert job.status == Status.PROCESSING  # paused for 23 hours at the last run
    summary = engine.run_once(email_kind)  # 24 hours and the test's seconds: past it
    assert summary.jobs_expired == 1
    job.refresh_from_db()
    assert job.status == Status.FAILED
    assert job.reason.startswith("Failed: paused for more than 24 hours: cannot connect")
    assert set(statuses(job)) == {Status.FAILED}
    assert job.failed_items == 2


def test_a_batch_that_makes_progress_ends_the_pause(
    company, email_kind, mail_server_down, database_time
):
    job = make_email_job(company, 60)
    engine.run_once(email_kind)
    job.refresh_from_db()
    assert job.paused_at is not None
    mail_server_down.start()
    database_time.shift(timedelta(minutes=5))
    resumed = database_time.now()
    engine.run_once(email_kind)
    job.refresh_from_db()
    assert (job.status, job.paused_at, job.succeeded_items) == (Status.PROCESSING, None, 50)
    # The inactivity clock restarts with the batch that made progress.
    assert resumed <= job.activity_at <= database_time.now()


# --- item 4: the original's manual SQL -------------------------------------------------


def test_the_reset_sql_after_a_killed_run_is_picked_up_at_once(company, email_kind, smtp_sink):
    job = make_email_job(company, 3)
    # A run claimed the job, marked its first item and was killed: its heartbeat is fresh.
    killed = engine.claim_next_job(email_kind, company.pk)
    first = job.items.order_by("id").first()
    assert killed.mark(first.pk) == 1
    assert engine.run_once(email_kind).companies_served == 0  # the claim still holds it

    sql(f"UPDATE bulk_email_jobs SET status = 'pending' WHERE id = {job.pk};")
    assert engine.companies_in_fair_order(email_kind) == [company.pk]
    summary = engine.run_once(email_kind)
    assert summary.items_succeeded == 2 and summary.jobs_completed == 1
    job.refresh_from_db()
    assert job.status == Status.COMPLETED and job.claim_token is None
    first.refresh_from_db()
    assert first.status == Status.FAILED and "not resent" in first.reason
    assert len(smtp_sink.messages) == 2
    # Had the old run been alive, its next write would have changed nothing.
    assert killed.record(first.pk, {"status": Status.COMPLETED}) == 0


@pytest.mark.parametrize(
    "item_condition, expected_counts",
    [
        # The original's statement: every item, delivered ones included, is cancelled.
        ("", {"succeeded_items": 0, "failed_items": 0, "cancelled_items": 60}),
        # The variant that keeps delivered items' history.
        (
            " AND status IN ('pending', 'processing')",
            {"succeeded_items": 50, "failed_items": 0, "cancelled_items": 10},
        ),
    ],
)
def test_the_cancel_sql_is_recounted_by_the_next_run(
    company, email_kind, item_condition, expected_counts
):
    job = make_email_job(company, 60)
    engine.run_once(email_kind)
    # A run holding the job was killed: its claim stays behind.
    BulkEmailJob.objects.filter(pk=job.pk).update(
        claim_token="killed-run", heartbeat_at=timezone.now()
    )
    sql(
        "UPDATE bulk_email_jobs SET status = 'cancelled', reason = 'Cancelled by admin' "
        f"WHERE id = {job.pk};"
    )
    sql(
        "UPDATE bulk_email_job_items SET status = 'cancelled', reason = 'Cancelled by admin' "
        f"WHERE bulk_email_job_id = {job.pk}{item_condition};"
    )
    summary = engine.run_once(email_kind)
    assert summary.items_attempted == 0
    job.refresh_from_db()
    assert (job.status, job.reason) == (Status.CANCELLED, "Cancelled by admin")
    assert job.claim_token is None and job.finished_at is not None
    assert {name: getattr(job, name) for name in expected_counts} == expected_counts
    assert job.total_items == 60


# --- item 7: backoff does not block a company's queue ----------------------------------


def test_a_job_waiting_for_backoff_lets_the_companys_next_job_run(
    company, email_kind, database_time
):
    waiting = make_email_job(company, 2)
    ready = make_email_job(company, 3)
    BulkEmailJob.objects.filter(pk=waiting.pk).update(status=Status.PROCESSING)
    waiting.items.update(next_attempt_at=database_time.now() + timedelta(minutes=5), attempts=1)

    summary = engine.run_once(email_kind)
    assert summary.items_succeeded == 3 and summary.jobs_completed == 1
    ready.refresh_from_db()
    waiting.refresh_from_db()
    assert ready.status == Status.COMPLETED
    assert waiting.status == Status.PROCESSING and waiting.claim_token is None
    assert set(statuses(waiting)) == {Status.PENDING}

    database_time.shift(timedelta(minutes=5))
    summary = engine.run_once(email_kind)
    assert summary.items_succeeded == 2
    waiting.refresh_from_db()
    assert waiting.status == Status.COMPLETED


def test_still_one_claimed_job_per_company_while_the_oldest_waits(company, email_kind):
    waiting = make_email_job(company, 2)
    make_email_job(company, 3)
    waiting.items.update(next_attempt_at=timezone.now() + timedelta(minutes=5))
    claim = engine.claim_next_job(email_kind, company.pk)
    assert claim.job.pk != waiting.pk
    assert engine.claim_next_job(email_kind, company.pk) is None
    assert BulkEmailJob.objects.filter(company=company, claim_token__isnull=False).count() == 1


def test_a_job_with_nothing_left_is_still_finished(company, email_kind):
    done = make_email_job(company, 2)
    make_email_job(company, 1)
    BulkEmailJob.objects.filter(pk=done.pk).update(status=Status.PROCESSING)
    done.items.update(status=Status.COMPLETED)
    summary = engine.run_once(email_kind)
    done.refresh_from_db()
    assert done.status == Status.COMPLETED and done.succeeded_items == 2
    assert summary.jobs_completed == 1  # the next job waits for the next run


def test_a_company_held_while_a_run_looks_is_left_alone_even_if_released_meanwhile(
    company, email_kind
):
    """Run A releases the company's first job in the instant run B looks for a job: B
    must not take a job while A may still hold one, nor any job out of turn."""
    first = make_email_job(company, 3)
    second = make_email_job(company, 3)
    run_a = engine.claim_next_job(email_kind, company.pk)
    assert run_a.job.pk == first.pk
    released = False

    def release_right_after_the_look(execute, sql, params, many, context):
        nonlocal released
        result = execute(sql, params, many, context)
        if not released:
            released = True
            run_a.release()
        return result

    with connection.execute_wrapper(release_right_after_the_look):
        run_b = engine.claim_job(email_kind, company.pk)
    assert released
    # B saw the company held: it takes nothing.
    assert run_b is None
    # The next look takes the second job: never served, it is next in turn.
    assert engine.claim_job(email_kind, company.pk).job.pk == second.pk
