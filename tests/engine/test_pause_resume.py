"""A person's pause and resume as the engine sees them: a paused job sends nothing and holds
no claim across runs, its company's next job goes ahead, it never expires while paused,
and once resumed it finishes where it stopped with every recipient reached exactly once.
A pause during a batch stops it before its next item, and the item in hand keeps its
outcome. Real SMTP (smtp_sink); time passes by the database's clock (database_time)."""

from collections import Counter
from datetime import timedelta

import pytest

from bulkjobs import engine
from bulkjobs.models import JobAction, Status
from bulkjobs.ops.services import Actor, cancel_job, pause_job, resume_job
from emails.models import BulkEmailJob
from tests.conftest import make_email_job, make_user

pytestmark = pytest.mark.django_db


def statuses(job):
    return Counter(job.items.values_list("status", flat=True))


def addresses(job):
    return set(job.items.values_list("recipient_email", flat=True))


def test_a_paused_job_of_5000_sends_nothing_lets_the_next_job_run_and_completes_after_resume(
    company, email_kind, smtp_sink, database_time, settings
):
    # The company's pace off and big batches: the test is about the pause, not the pace.
    settings.BULKJOBS = {**settings.BULKJOBS, "EMAIL_COMPANY_RATE": "0"}
    anna = make_user("anna", company, first_name="Anna", last_name="Schmidt")
    big = make_email_job(company, 5000, subject="Newsletter")
    engine.run_once(email_kind, batch_size=200, max_seconds=0.001)  # one batch, then pause
    sent_before = len(smtp_sink.messages)
    assert sent_before == 200
    assert pause_job(big, by=Actor.person(anna))
    big.refresh_from_db()
    assert big.status == Status.PAUSED and big.succeeded_items == 200

    urgent = make_email_job(company, [f"urgent{n}@example.org" for n in range(3)], subject="Urgent")
    # Several runs over a day and more: longer than the inactivity limit (30 min) and the
    # provider-pause limit (24 h), neither of which applies to a person's pause.
    for _run in range(4):
        engine.run_once(email_kind, batch_size=200)
        big.refresh_from_db()
        assert big.status == Status.PAUSED and big.claim_token is None
        database_time.shift(timedelta(hours=7))
    assert len(smtp_sink.messages) == sent_before + 3  # the urgent job's, and only those
    urgent.refresh_from_db()
    assert urgent.status == Status.COMPLETED
    assert statuses(big) == {Status.COMPLETED: 200, Status.PENDING: 4800}

    assert resume_job(big, by=Actor.command("resume_job"))
    big.refresh_from_db()
    assert big.status == Status.PROCESSING and big.activity_at is None
    for _run in range(10):
        engine.run_once(email_kind, batch_size=500)
        big.refresh_from_db()
        if big.status == Status.COMPLETED:
            break
    assert big.status == Status.COMPLETED
    assert (big.succeeded_items, big.failed_items, big.total_items) == (5000, 0, 5000)
    delivered = Counter(smtp_sink.recipients())
    assert set(delivered) >= addresses(big)
    assert all(delivered[address] == 1 for address in addresses(big))
    history = [
        (a.action, a.via, a.name) for a in JobAction.objects.for_job("email", big.pk).reverse()
    ]
    assert history == [
        (JobAction.Action.PAUSE, JobAction.Via.APP, "Anna Schmidt"),
        (JobAction.Action.RESUME, JobAction.Via.COMMAND, "resume_job"),
    ]


@pytest.mark.django_db(transaction=True)  # the sink's callback has a connection of its own
def test_a_pause_during_a_batch_stops_before_the_next_item_and_keeps_the_one_in_hand(
    company, email_kind, smtp_sink
):
    job = make_email_job(company, 20)

    def pause_at_the_fifth(received):
        # While the fifth email is with the server (before it answers): in hand.
        if len(smtp_sink.messages) == 5:
            pause_job(BulkEmailJob.objects.get(pk=job.pk))

    claim = engine.claim_next_job(email_kind, company.pk)
    smtp_sink.on_message = pause_at_the_fifth
    engine.process_one_batch(claim, 50)
    claim.release()
    assert len(smtp_sink.messages) == 5
    job.refresh_from_db()
    assert job.status == Status.PAUSED and job.claim_token is None
    # Unlike a cancel, which cancels the item in hand: the fifth email's outcome is
    # known (the server accepted it), so it is written, not left "processing" for the
    # next claim to fail as interrupted ("delivery unknown").
    assert statuses(job) == {Status.COMPLETED: 5, Status.PENDING: 15}
    assert (job.succeeded_items, job.failed_items, job.cancelled_items) == (5, 0, 0)

    smtp_sink.on_message = None
    assert resume_job(job)
    engine.run_once(email_kind)
    job.refresh_from_db()
    assert job.status == Status.COMPLETED and job.succeeded_items == 20
    delivered = Counter(smtp_sink.recipients())
    assert all(delivered[address] == 1 for address in addresses(job))


def test_a_pause_between_batches_holds_no_claim_and_a_resume_before_the_next_run_loses_nothing(
    company, email_kind, smtp_sink
):
    job = make_email_job(company, 120)
    engine.run_once(email_kind)  # the company's pace: 50
    assert pause_job(job) and resume_job(job)
    job.refresh_from_db()
    assert job.status == Status.PROCESSING
    engine.run_once(email_kind, max_seconds=0.001)
    job.refresh_from_db()
    assert job.succeeded_items in (50, 100)  # the pace's next slot may not be open yet


def test_a_paused_job_does_not_expire_and_its_paused_time_does_not_count_after_resume(
    company, email_kind, smtp_sink, database_time, settings
):
    job = make_email_job(company, 120)
    engine.run_once(email_kind)
    assert pause_job(job)
    database_time.shift(timedelta(hours=30))  # past inactivity (30 min) and pause (24 h) limits
    assert engine.run_once(email_kind).jobs_expired == 0
    job.refresh_from_db()
    assert job.status == Status.PAUSED

    assert resume_job(job)
    # 29 minutes after the resume the job has not been inactive for 30 minutes of its own:
    # its clock starts when a run claims it again.
    database_time.shift(timedelta(minutes=29))
    summary = engine.run_once(email_kind)
    assert summary.jobs_expired == 0
    job.refresh_from_db()
    assert job.status == Status.PROCESSING and job.succeeded_items == 100


def test_a_job_paused_before_it_started_resumes_to_pending(company, email_kind, smtp_sink):
    job = make_email_job(company, 2)
    assert pause_job(job)
    assert engine.run_once(email_kind).items_succeeded == 0
    assert resume_job(job)
    job.refresh_from_db()
    assert job.status == Status.PENDING and job.started_at is None
    engine.run_once(email_kind)
    job.refresh_from_db()
    assert job.status == Status.COMPLETED


def test_a_job_waiting_for_its_provider_paused_by_a_person_is_no_longer_waiting(
    company, email_kind, settings
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", 9  # nothing listens
    job = make_email_job(company, 3)
    engine.run_once(email_kind)
    job.refresh_from_db()
    assert job.is_paused and job.paused_at is not None  # the provider pause
    assert pause_job(job)
    job.refresh_from_db()
    # One kind of pause at a time: the person's. The provider's limit no longer runs.
    assert (job.status, job.paused_at, job.reason, job.is_paused) == (
        Status.PAUSED,
        None,
        "",
        False,
    )


def test_only_active_jobs_pause_only_paused_jobs_resume_and_a_paused_job_can_be_cancelled(
    company, email_kind
):
    job = make_email_job(company, 3)
    assert not resume_job(job)
    assert pause_job(job)
    assert not pause_job(job)
    assert cancel_job(job, by=Actor.command("cancel_job")) == 3
    job.refresh_from_db()
    assert job.status == Status.CANCELLED
    assert not pause_job(job) and not resume_job(job)
    assert [a.action for a in JobAction.objects.for_job("email", job.pk)] == [
        JobAction.Action.CANCEL,
        JobAction.Action.PAUSE,
    ]


def test_the_run_does_not_count_a_paused_job_as_work_due(company, email_kind):
    from bulkjobs.ops.commands import work_due_now

    job = make_email_job(company, 3)
    assert work_due_now(email_kind)
    pause_job(job)
    assert not work_due_now(email_kind)


def test_the_job_that_ran_while_another_was_paused_waits_its_turn_without_expiring(
    company, email_kind, smtp_sink, database_time, settings
):
    # Runs 15 minutes apart count as a processor running all along (not downtime, which
    # would be forgiven): only the queueing is left to forgive.
    settings.BULKJOBS = {**settings.BULKJOBS, "EMAIL_COMPANY_RATE": "0", "RUN_GAP_SECONDS": 3600}
    first = make_email_job(company, 200, subject="First")
    second = make_email_job(company, [f"s{n}@example.org" for n in range(200)], subject="Second")

    def one_batch():
        return engine.run_once(email_kind, batch_size=50, max_seconds=0.001)

    one_batch()  # the first job's first batch
    pause_job(first)
    one_batch()  # the second job goes ahead
    resume_job(first)
    # The two take turns again (the first, served longest ago, goes first): each waits 30
    # minutes between its batches, as long as the inactivity limit, but queued while its
    # company's other job is served.
    for _run in range(6):
        database_time.shift(timedelta(minutes=15))
        assert one_batch().jobs_expired == 0
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.succeeded_items) == (Status.COMPLETED, 200)
    assert (second.status, second.succeeded_items) == (Status.COMPLETED, 200)
    recipients = smtp_sink.recipients()
    assert len(recipients) == len(set(recipients)) == 400


def test_who_did_what_goes_with_the_job_when_it_is_pruned(company, email_kind):
    from django.utils import timezone

    from bulkjobs.ops import retention

    old, recent = make_email_job(company, 2), make_email_job(company, 2)
    for job in (old, recent):
        pause_job(job, by=Actor.command("pause_job"))
        cancel_job(job, by=Actor.command("cancel_job"))
    BulkEmailJob.objects.filter(pk=old.pk).update(finished_at=timezone.now() - timedelta(days=200))
    retention.prune(email_kind, timezone.now() - timedelta(days=180))
    assert not JobAction.objects.filter(job_id=old.pk).exists()
    assert JobAction.objects.filter(job_id=recent.pk).count() == 2


@pytest.mark.django_db(
    transaction=True
)  # lanes and the sink's callback have connections of their own
def test_a_pause_stops_every_lane_of_a_batch_and_each_email_sent_is_recorded(
    company, email_kind, smtp_sink
):
    job = make_email_job(company, 60)
    taken_when_paused = []

    def pause_at_the_tenth(received):
        # At least ten: with three connections the count may pass ten between two calls.
        if len(smtp_sink.messages) >= 10 and not taken_when_paused:
            pause_job(BulkEmailJob.objects.get(pk=job.pk))
            # The other lanes went on while the pause was being written.
            taken_when_paused.append(len(smtp_sink.messages))

    claim = engine.claim_next_job(email_kind, company.pk)
    smtp_sink.on_message = pause_at_the_tenth
    engine.process_one_batch(claim, 60, lanes=3)  # three connections at once
    claim.release()
    sent = len(smtp_sink.messages)
    # Once the pause is in, at most one more email per other lane: the one in hand.
    assert sent <= taken_when_paused[0] + 2 < 60
    job.refresh_from_db()
    # Every email the server took is recorded as sent: none is left "processing" for the
    # next claim to fail as "delivery unknown", and the counters agree.
    assert statuses(job) == {Status.COMPLETED: sent, Status.PENDING: 60 - sent}
    assert (job.status, job.succeeded_items, job.claim_token) == (Status.PAUSED, sent, None)
