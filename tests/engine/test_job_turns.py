"""A company's jobs take turns batch by batch (issue 20, part 3; bulkjobs.engine.claim):
a small job is never stuck behind a big one, and the guarantees hold as before (one
claimed job per company, at most once, the reset job first, fair order between
companies). Real engine runs, a real SMTP sink, the database's clock moved by
database_time; on SQLite, PostgreSQL and MariaDB alike."""

import itertools
import re
from datetime import timedelta

import pytest
from django.db import connection

from bulkjobs import engine
from bulkjobs.engine.claim import CLAIM_LOOKAHEAD
from bulkjobs.models import Status
from cards.models import Company
from emails.models import BulkEmailJob
from tests.conftest import make_email_job

pytestmark = pytest.mark.django_db

MESSAGE_ID = re.compile(r"<bulk-email\.(\d+)\.(\d+)[.@]")


def job_of(received):
    return int(MESSAGE_ID.search(received.message["Message-ID"]).group(1))


def jobs_in_order(sink):
    """The job of each email the sink received, in the order they arrived."""
    return [job_of(received) for received in sorted(sink.messages, key=lambda m: m.at)]


def addresses(prefix, count):
    return [f"{prefix}{n}@example.net" for n in range(count)]


def blocks(sequence):
    """Consecutive runs of the same value: [(value, length), ...]."""
    return [(value, len(list(run))) for value, run in itertools.groupby(sequence)]


def test_a_one_recipient_job_is_delivered_in_the_next_run_behind_a_5000_recipient_job(
    company, email_kind, smtp_sink, database_time
):
    """The issue's case: "Newsletter Dezember" to 5,000 at the default pace (50 a
    minute, about 100 minutes), and "Dringend" to one person created meanwhile."""
    newsletter = make_email_job(company, 5000, subject="Newsletter Dezember")
    for _minute in range(3):
        assert engine.run_once(email_kind).items_succeeded == 50
        database_time.shift(timedelta(minutes=1))
    urgent = make_email_job(company, ["termin@example.net"], subject="Dringend: Ihr Termin")

    summary = engine.run_once(email_kind)

    urgent.refresh_from_db()
    assert urgent.status == Status.COMPLETED and urgent.succeeded_items == 1
    assert [m.rcpt_tos for m in smtp_sink.messages if job_of(m) == urgent.pk] == [
        ["termin@example.net"]
    ]
    # The newsletter lost that one batch slot of the company's pace, and no more: the
    # next minute's run goes on with it.
    newsletter.refresh_from_db()
    assert newsletter.succeeded_items == 150 and summary.items_succeeded == 1
    database_time.shift(timedelta(minutes=1))
    assert engine.run_once(email_kind).items_succeeded == 50
    newsletter.refresh_from_db()
    assert newsletter.succeeded_items == 200 and newsletter.claim_token is None
    # Every email once.
    recipients = smtp_sink.recipients()
    assert len(recipients) == len(set(recipients)) == 201


def test_long_jobs_take_turns_one_batch_each_and_never_share_a_batch(
    company, email_kind, smtp_sink, settings
):
    settings.BULKJOBS = {**settings.BULKJOBS, "EMAIL_COMPANY_RATE": "0"}
    first = make_email_job(company, addresses("first", 120))
    second = make_email_job(company, addresses("second", 70))
    third = make_email_job(company, addresses("third", 30))

    summary = engine.run_once(email_kind)

    assert summary.jobs_completed == 3 and summary.items_succeeded == 220
    # Batch by batch, least recently served first; a job's batch is never interleaved
    # with another job's (one claimed job per company at a time).
    assert blocks(jobs_in_order(smtp_sink)) == [
        (first.pk, 50),
        (second.pk, 50),
        (third.pk, 30),
        (first.pk, 50),
        (second.pk, 20),
        (first.pk, 20),
    ]
    assert len(set(smtp_sink.recipients())) == 220


def test_turn_order_is_never_served_oldest_first_then_least_recently_served(
    company, email_kind, database_time
):
    jobs = [make_email_job(company, 3) for _n in range(3)]
    taken = []
    for _n in range(6):
        claim = engine.claim_job(email_kind, company.pk)
        # While it is held, nobody else claims for the company.
        assert engine.claim_job(email_kind, company.pk) is None
        taken.append(claim.job.pk)
        claim.release()
        database_time.shift(timedelta(seconds=1))
    ids = [job.pk for job in jobs]
    assert taken == ids + ids
    # A job created now goes next, before every job already served.
    newcomer = make_email_job(company, 1)
    assert engine.claim_job(email_kind, company.pk).job.pk == newcomer.pk


def test_a_job_reset_to_pending_while_claimed_is_still_taken_first(company, email_kind, smtp_sink):
    job = make_email_job(company, 3)
    killed = engine.claim_next_job(email_kind, company.pk)
    first = job.items.order_by("id").first()
    assert killed.mark(first.pk) == 1
    newcomer = make_email_job(company, addresses("new", 2))
    # Held by the killed run's claim: the company is left alone, its new job too.
    assert engine.claim_job(email_kind, company.pk) is None
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE bulk_email_jobs SET status = 'pending' WHERE id = {job.pk}")
    claim = engine.claim_next_job(email_kind, company.pk)
    assert claim.job.pk == job.pk
    first.refresh_from_db()
    assert first.status == Status.FAILED and "not resent" in first.reason
    claim.release()
    # The old claim's writes are fenced off.
    assert killed.record(first.pk, {"status": Status.COMPLETED}) == 0
    engine.run_once(email_kind)
    newcomer.refresh_from_db()
    assert newcomer.status == Status.COMPLETED
    assert first.recipient_email not in smtp_sink.recipients()


def test_jobs_waiting_for_backoff_keep_their_turn_and_the_lookahead_is_bounded(
    company, email_kind, database_time
):
    waiting = [make_email_job(company, 1) for _n in range(CLAIM_LOOKAHEAD)]
    ready = make_email_job(company, 1)
    later = database_time.now() + timedelta(minutes=5)
    for job in waiting:
        job.items.update(next_attempt_at=later, attempts=1)
    # The ten next in turn all wait for their backoff: the claim looks no further, so
    # the company waits for the next run (bounded work per claim).
    assert engine.claim_job(email_kind, company.pk) is None
    BulkEmailJob.objects.filter(pk=waiting[-1].pk).delete()
    # One of them gone, the ready job is within reach.
    claim = engine.claim_job(email_kind, company.pk)
    assert claim.job.pk == ready.pk
    claim.release()
    # Once due, the waiting jobs come first: they kept their place in turn.
    database_time.shift(timedelta(minutes=5, seconds=1))
    assert engine.claim_job(email_kind, company.pk).job.pk == waiting[0].pk


def test_companies_keep_their_fair_order(company, email_kind, smtp_sink, database_time):
    other = Company.objects.create(name="Other", slug="other")
    long_job = make_email_job(company, 500)
    engine.run_once(email_kind)
    database_time.shift(timedelta(minutes=1))
    make_email_job(company, 1)  # a newcomer of the company served last
    theirs = make_email_job(other, 3)
    # Never served, the other company comes first; the newcomer does not jump ahead of
    # another company because it is new.
    assert engine.companies_in_fair_order(email_kind) == [other.pk, company.pk]
    summary = engine.run_once(email_kind)
    theirs.refresh_from_db()
    long_job.refresh_from_db()
    assert theirs.status == Status.COMPLETED
    assert summary.items_succeeded == 4 and long_job.succeeded_items == 50


@pytest.mark.parametrize("jobs", [3, 40])
def test_a_claim_costs_the_same_however_many_jobs_the_company_queued(
    company, email_kind, jobs, django_assert_num_queries
):
    for _n in range(jobs):
        make_email_job(company, 1)
    # The next jobs in turn, which of them have work (never more than CLAIM_LOOKAHEAD),
    # the claim in its savepoint (three statements) and the claimed job's row.
    with django_assert_num_queries(6):
        claim = engine.claim_job(email_kind, company.pk)
    assert claim is not None
