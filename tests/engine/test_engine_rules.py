"""The engine's rules as time passes (database_time, tests/conftest.py): batches, stuck
claims, inactivity, cancel, fencing, retry, fairness."""

import time
from datetime import timedelta

import pytest
from django.core import mail
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from bulkjobs import engine
from bulkjobs.engine.items import Lane
from bulkjobs.kinds import Outcome, get_kind
from bulkjobs.models import ProcessorRun, RateBucket, Status
from bulkjobs.ops.services import cancel_job, retry_failed_items
from cards.models import Company
from emails.models import BulkEmailJob, BulkEmailJobItem
from tests.conftest import make_email_job

pytestmark = pytest.mark.django_db


def run(kind, **kwargs):
    return engine.run_once(kind, **kwargs)


def statuses(job):
    return list(job.items.order_by("id").values_list("status", flat=True))


def test_a_run_sends_the_companys_pace_and_the_next_minutes_runs_complete_the_job(
    company, email_kind, database_time
):
    job = make_email_job(company, 120)
    # The default pace is 50 a minute: one batch of 50, however much time remains.
    assert run(email_kind).items_succeeded == 50
    job.refresh_from_db()
    assert (job.status, job.succeeded_items, job.total_items) == (Status.PROCESSING, 50, 120)
    assert len(mail.outbox) == 50
    database_time.shift(timedelta(minutes=1))
    run(email_kind)
    database_time.shift(timedelta(minutes=1))
    summary = run(email_kind)
    job.refresh_from_db()
    assert summary.items_succeeded == 20 and summary.jobs_completed == 1
    assert job.status == Status.COMPLETED
    assert job.reason == "All 120 item(s) succeeded."
    assert job.finished_at is not None and job.claim_token is None
    assert len(mail.outbox) == 120


def test_batch_size_option_is_respected(company, email_kind, settings, caplog):
    settings.BULKJOBS = {**settings.BULKJOBS, "EMAIL_COMPANY_RATE": "0"}
    job = make_email_job(company, 30)
    with caplog.at_level("INFO"):
        summary = run(email_kind, batch_size=7)
    batches = [r.getMessage() for r in caplog.records if ": batch of " in r.getMessage()]
    assert batches == [f"Job {job.pk}: batch of {n} item(s)" for n in (7, 7, 7, 7, 2)]
    assert summary.batches == 5 and summary.jobs_completed == 1


def test_the_companys_pace_goes_to_one_job_per_batch_slot(company, email_kind):
    first = make_email_job(company, 60)
    second = make_email_job(company, 5)
    run(email_kind)
    first.refresh_from_db()
    second.refresh_from_db()
    # Both never served: the older goes first, and its batch spends the minute's pace.
    assert first.succeeded_items == 50
    assert second.status == Status.PENDING and second.started_at is None


def test_the_database_refuses_a_second_claimed_job_per_company(company, email_kind):
    first = make_email_job(company, 2)
    second = make_email_job(company, 2)
    claim = engine.claim_next_job(email_kind, company.pk)
    assert claim.job.pk == first.pk
    with pytest.raises(IntegrityError), transaction.atomic():
        BulkEmailJob.objects.filter(pk=second.pk).update(claim_token="another-run")
    # And the engine itself backs off instead of failing.
    BulkEmailJob.objects.filter(pk=first.pk).update(status=Status.CANCELLED)
    assert engine.claim_next_job(email_kind, company.pk) is None


def test_a_stuck_claim_is_released_after_10_minutes_and_the_interrupted_email_not_resent(
    company, email_kind, database_time
):
    job = make_email_job(company, 3)
    dead = engine.claim_next_job(email_kind, company.pk)
    first = job.items.order_by("id").first()
    # A run marked the first item and died before recording the outcome.
    assert dead.mark(first.pk) == 1

    database_time.shift(timedelta(minutes=9))
    summary = run(email_kind)
    assert summary.claims_released == 0 and summary.companies_served == 0

    database_time.shift(timedelta(minutes=2))
    summary = run(email_kind)
    assert summary.claims_released == 1
    assert summary.items_succeeded == 2
    first.refresh_from_db()
    assert first.status == Status.FAILED
    assert "not resent" in first.reason
    assert first.recipient_email not in [m.to[0] for m in mail.outbox]
    job.refresh_from_db()
    assert job.status == Status.COMPLETED and job.failed_items == 1


def _make_job_that_cannot_progress(company):
    """A started job whose company's pace is spent for a day: its item is due, but no
    batch gets a token for it. (An item waiting for its retry is not inactivity: see
    tests/emails/test_retry_schedule.py.)"""
    job = make_email_job(company, 1)
    RateBucket.objects.update_or_create(
        key=get_kind("email").company_bucket(company.pk),
        defaults={"tat": time.time() + 86400},
    )
    BulkEmailJob.objects.filter(pk=job.pk).update(
        status=Status.PROCESSING, started_at=timezone.now(), activity_at=timezone.now()
    )
    return job


def test_a_job_without_progress_for_30_minutes_of_its_own_activity_expires(
    company, email_kind, database_time
):
    job = _make_job_that_cannot_progress(company)
    for _minute in range(30):
        run(email_kind)
        database_time.shift(timedelta(minutes=1))
    job.refresh_from_db()
    assert job.status == Status.PROCESSING
    database_time.shift(timedelta(minutes=1))
    summary = run(email_kind)
    job.refresh_from_db()
    assert summary.jobs_expired == 1
    assert job.status == Status.FAILED
    assert job.reason == "Expired: no progress for 30 minutes."
    assert statuses(job) == [Status.FAILED]
    assert job.failed_items == 1


def test_time_spent_waiting_for_the_companys_other_jobs_does_not_count(
    company, email_kind, settings, database_time
):
    """Seven jobs take turns one batch a minute: each waits six minutes between its
    batches, longer than the inactivity limit (5 minutes here), and none expires."""
    settings.BULKJOBS = {**settings.BULKJOBS, "EMAIL_COMPANY_RATE": "1/min", "INACTIVE_MINUTES": 5}
    jobs = [make_email_job(company, 2) for _n in range(7)]
    for _minute in range(14):
        summary = run(email_kind, batch_size=1)
        assert summary.jobs_expired == 0
        database_time.shift(timedelta(minutes=1))
    assert [job.status for job in BulkEmailJob.objects.filter(pk__in=[j.pk for j in jobs])] == [
        Status.COMPLETED
    ] * 7


def test_a_job_passed_over_while_its_company_is_idle_still_expires(
    company, email_kind, settings, database_time
):
    """The turns do not shelter a job that cannot progress once its company has nothing
    else to do: its own inactivity counts again."""
    settings.BULKJOBS = {**settings.BULKJOBS, "INACTIVE_MINUTES": 5}
    other = make_email_job(company, 2)
    run(email_kind)
    other.refresh_from_db()
    assert other.status == Status.COMPLETED
    stalled = _make_job_that_cannot_progress(company)
    run(email_kind)
    # Runs every two minutes (a longer gap would be forgiven as a time no processor ran).
    for _run in range(2):
        database_time.shift(timedelta(minutes=2))
        assert run(email_kind).jobs_expired == 0  # the other job finished within the limit
    database_time.shift(timedelta(minutes=2))
    assert run(email_kind).jobs_expired == 1
    stalled.refresh_from_db()
    assert stalled.status == Status.FAILED


def test_time_when_no_processor_ran_does_not_count(company, email_kind, database_time):
    job = _make_job_that_cannot_progress(company)
    for _minute in range(20):
        run(email_kind)
        database_time.shift(timedelta(minutes=1))
    database_time.shift(timedelta(hours=3))  # cron was down
    run(email_kind)
    job.refresh_from_db()
    assert job.status == Status.PROCESSING
    # 20 minutes before the outage, 12 after (one is absorbed by the gap itself).
    for _minute in range(12):
        database_time.shift(timedelta(minutes=1))
        run(email_kind)
    job.refresh_from_db()
    assert job.status == Status.FAILED


def test_cancel_marks_the_job_and_its_unfinished_items(company, email_kind, owner):
    job = make_email_job(company, 80)
    run(email_kind)
    cancelled = cancel_job(job, by=owner)
    assert cancelled == 30
    job.refresh_from_db()
    assert (job.status, job.reason) == (Status.CANCELLED, "Cancelled by user")
    assert (job.succeeded_items, job.cancelled_items) == (50, 30)
    assert run(email_kind).items_attempted == 0
    assert cancel_job(job) is None  # already finished


def test_retry_with_backoff_then_give_up(company, email_kind, settings, smtp_sink, database_time):
    # Exponential backoff, as wallet items retry; emails retry on their day-long schedule
    # unless it is turned off (tests/emails/test_retry_schedule.py).
    settings.BULKJOBS = {**settings.BULKJOBS, "EMAIL_RETRY_SCHEDULE": "off"}
    job = make_email_job(company, ["tempfail@example.net", "ok@example.net"])
    run(email_kind)
    item = job.items.get(recipient_email="tempfail@example.net")
    assert item.status == Status.PENDING and item.attempts == 1
    assert "450" in item.reason
    wait = item.next_attempt_at - database_time.now()
    # 15 to 30 seconds from when it was decided, a moment ago.
    assert timedelta(seconds=14) <= wait <= timedelta(seconds=30)

    assert run(email_kind).items_attempted == 0  # not due yet
    delays = []
    for _attempt in range(4):
        database_time.move_to(item.next_attempt_at)
        run(email_kind)
        item.refresh_from_db()
        if item.next_attempt_at and item.status == Status.PENDING:
            delays.append(item.next_attempt_at - database_time.now())
    assert item.status == Status.FAILED and item.attempts == 5
    assert item.reason.startswith("Gave up after 5 attempts: Temporary failure at RCPT: 450")
    # Exponential: each wait ceiling doubles (jitter keeps it within [ceiling/2, ceiling]).
    assert delays[-1] > timedelta(seconds=60)
    job.refresh_from_db()
    assert job.status == Status.COMPLETED and job.failed_items == 1 and job.succeeded_items == 1
    assert "1 of 2 item(s) failed" in job.reason

    assert retry_failed_items(job).queued == 1
    job.refresh_from_db()
    item.refresh_from_db()
    assert job.status == Status.PENDING and job.failed_items == 0
    # The history stays: five attempts so far, each in the log; a fresh round begins.
    assert (item.status, item.attempts, item.reason) == (Status.PENDING, 5, "")
    assert item.attempts_this_round == 0
    assert [entry["n"] for entry in item.attempt_log] == [1, 2, 3, 4, 5]


def test_retry_refuses_running_jobs(company):
    job = make_email_job(company, 2)
    with pytest.raises(ValueError, match="only completed or failed"):
        retry_failed_items(job)


def test_fairness_small_companies_are_not_starved_by_a_big_one(company, email_kind):
    big = make_email_job(company, 5000)
    small_jobs = []
    for n in range(20):
        other = Company.objects.create(name=f"Small {n}", slug=f"small-{n}")
        small_jobs.append(make_email_job(other, 1))
    summary = run(email_kind)
    assert summary.companies_served == 21
    assert (
        BulkEmailJob.objects.filter(
            pk__in=[j.pk for j in small_jobs], status=Status.COMPLETED
        ).count()
        == 20
    )
    big.refresh_from_db()
    assert big.succeeded_items == 50


def test_least_recently_served_company_goes_first_when_time_runs_out(company, email_kind, settings):
    # The pace off: a company that spent its pace is not claimed at all (not this test's point).
    settings.BULKJOBS = {**settings.BULKJOBS, "EMAIL_COMPANY_RATE": "0"}
    other = Company.objects.create(name="Other", slug="other")
    first = make_email_job(company, 200)
    second = make_email_job(other, 200)
    # A budget so small only the first company in line is served each run.
    served = []
    for _run in range(4):
        run(email_kind, max_seconds=0.001)
        served.append(
            BulkEmailJob.objects.filter(pk__in=[first.pk, second.pk])
            .order_by(F("claimed_at").desc(nulls_last=True))
            .values_list("company_id", flat=True)
            .first()
        )
    assert served == [company.pk, other.pk, company.pk, other.pk]


def test_the_original_sql_cancel_statements_work_verbatim(company, email_kind):
    job = make_email_job(company, 60)
    run(email_kind)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE bulk_email_jobs SET status = 'cancelled', reason = 'Cancelled by admin' WHERE id = {job.pk};"
        )
        cursor.execute(
            f"UPDATE bulk_email_job_items SET status = 'cancelled', reason = 'Cancelled by admin' WHERE bulk_email_job_id = {job.pk};"
        )
    assert run(email_kind).items_attempted == 0
    job.refresh_from_db()
    assert job.status == Status.CANCELLED and job.reason == "Cancelled by admin"
    assert BulkEmailJobItem.objects.filter(job=job, status=Status.CANCELLED).count() == 60


def test_the_original_sql_reset_puts_a_stuck_job_back_to_work(company, email_kind, database_time):
    job = make_email_job(company, 60)
    run(email_kind)
    # A run hung holding the job; an operator resets it as the original document says.
    BulkEmailJob.objects.filter(pk=job.pk).update(
        claim_token="hung-run", heartbeat_at=database_time.now()
    )
    database_time.shift(timedelta(minutes=45))
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE bulk_email_jobs SET status = 'pending' WHERE id = {job.pk};")
    for _minute in range(12):
        run(email_kind)
        database_time.shift(timedelta(minutes=1))
    job.refresh_from_db()
    assert job.status == Status.COMPLETED
    assert job.succeeded_items == 60


def process_a_batch_while(email_kind, company, smtp_sink, on_message):
    """Claim the company's job and process one batch, the sink calling
    on_message(received) for each message it accepts (what happens meanwhile: a takeover,
    a cancel, an operator's SQL); then release. Returns the batch's RunSummary."""
    claim = engine.claim_next_job(email_kind, company.pk)
    smtp_sink.on_message = on_message
    result = engine.process_one_batch(claim, 50)
    claim.release()
    return result.summary


def taking_over_at(job, smtp_sink, message_count):
    """An on_message that lets another run take the job's claim at that message."""

    def takeover(received):
        if len(smtp_sink.messages) == message_count:
            BulkEmailJob.objects.filter(pk=job.pk).update(claim_token="new-owner")

    return takeover


def assert_stopped_after_a_takeover_at_the_third_email(job, smtp_sink):
    assert len(smtp_sink.messages) == 3
    job.refresh_from_db()
    assert job.claim_token == "new-owner"  # the old run's release changed nothing
    counts = {s: statuses(job).count(s) for s in Status.values}
    assert counts[Status.COMPLETED] == 2
    assert counts[Status.PROCESSING] == 1  # its outcome could not be recorded: fenced
    assert counts[Status.PENDING] == 7


@pytest.mark.django_db(transaction=True)
def test_fencing_a_run_that_lost_its_claim_stops_before_the_next_item(
    company, email_kind, smtp_sink
):
    job = make_email_job(company, 10)
    process_a_batch_while(email_kind, company, smtp_sink, taking_over_at(job, smtp_sink, 3))
    assert_stopped_after_a_takeover_at_the_third_email(job, smtp_sink)


@pytest.mark.django_db(transaction=True)
def test_a_heartbeat_that_finds_the_claim_lost_stops_before_the_next_item(
    company, email_kind, smtp_sink, settings, caplog
):
    # A heartbeat before every item: the claim's loss is seen by the heartbeat, before
    # the statement that would write the third email's outcome and mark the fourth.
    settings.BULKJOBS = {**getattr(settings, "BULKJOBS", {}), "HEARTBEAT_SECONDS": 1e-9}
    job = make_email_job(company, 10)
    process_a_batch_while(email_kind, company, smtp_sink, taking_over_at(job, smtp_sink, 3))
    assert_stopped_after_a_takeover_at_the_third_email(job, smtp_sink)
    # The third email's outcome was still offered to the database, which refused it.
    assert "claim lost before recording" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_cancel_stops_a_batch_in_flight(company, email_kind, smtp_sink):
    job = make_email_job(company, 20)

    def cancel_after_five(received):
        if len(smtp_sink.messages) == 5:
            cancel_job(BulkEmailJob.objects.get(pk=job.pk))

    process_a_batch_while(email_kind, company, smtp_sink, cancel_after_five)
    assert len(smtp_sink.messages) == 5
    job.refresh_from_db()
    assert job.status == Status.CANCELLED
    assert job.succeeded_items == 4 and job.cancelled_items == 16


def test_the_processor_run_is_recorded(company, email_kind):
    make_email_job(company, 1)
    run(email_kind)
    record = ProcessorRun.objects.get(kind="email")
    assert record.last_finished_at >= record.last_started_at
    assert "1 succeeded" in record.last_summary


def test_a_provider_retry_after_is_respected(company, email_kind):
    job = make_email_job(company, 1)
    claim = engine.claim_next_job(email_kind, company.pk)
    item = job.items.get()
    assert claim.mark(item.pk) == 1
    item.refresh_from_db()
    batch = engine.Batch(claim)
    lane = Lane(batch)
    before = timezone.now()
    outcome = Outcome.retry("429 Too Many Requests", retry_after=3600)
    assert lane.record(item, lane.decide(item, outcome))
    item.refresh_from_db()
    assert item.status == Status.PENDING
    assert item.next_attempt_at - before >= timedelta(seconds=3600)
    assert batch.tally[Outcome.RETRY] == 1


def test_a_recorded_outcome_needs_the_claim(company, email_kind):
    job = make_email_job(company, 1)
    claim = engine.claim_next_job(email_kind, company.pk)
    item = job.items.get()
    assert claim.mark(item.pk) == 1
    BulkEmailJob.objects.filter(pk=job.pk).update(claim_token="another-run")
    batch = engine.Batch(claim)
    lane = Lane(batch)
    assert not lane.record(item, lane.decide(item, Outcome.done()))
    item.refresh_from_db()
    assert item.status == Status.PROCESSING
    assert batch.tally[Outcome.DONE] == 0
