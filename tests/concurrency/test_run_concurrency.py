"""One run serving several companies at once: real overlap at the mail server, one
connection per company, worker threads that close their database connections, and a
lost connection in a worker thread reaching the run's caller. Transactional tests: the
worker threads have their own database connections and see only committed data."""

import threading

import pytest
from django.db.backends.signals import connection_created

from bulkjobs.engine import Run, outage, run_once
from bulkjobs.engine.run import within_connection_limit
from cards.models import Company
from emails.models import BulkEmailJob
from tests.concurrency.test_connection_lost import backend_id, end_session, server_database
from tests.conftest import make_email_job

pytestmark = pytest.mark.django_db(transaction=True)

__all__ = ["server_database"]  # a fixture used below


def make_companies(count, emails):
    return [
        make_email_job(Company.objects.create(name=f"Company {n}", slug=f"company-{n}"), emails)
        for n in range(count)
    ]


def test_a_run_with_concurrency_4_talks_to_the_mail_server_for_4_companies_at_once(
    smtp_sink, email_kind
):
    smtp_sink.delay = 0.05
    make_companies(4, 5)
    summary = run_once(email_kind, concurrency=4)
    assert (summary.companies_served, summary.items_succeeded) == (4, 20)
    assert smtp_sink.max_in_flight >= 2
    assert smtp_sink.sessions == 4  # each company's batch on its own connection
    assert len(set(smtp_sink.recipients())) == 20


def test_a_run_with_concurrency_1_holds_one_conversation_at_a_time(smtp_sink, email_kind):
    smtp_sink.delay = 0.02
    make_companies(4, 5)
    summary = run_once(email_kind, concurrency=1)
    assert (summary.companies_served, summary.items_succeeded) == (4, 20)
    assert smtp_sink.max_in_flight == 1


def test_one_companys_batch_uses_its_lanes_each_item_once(smtp_sink, email_kind, settings):
    """EMAIL_CONNECTIONS=3: a batch of 30 goes over three connections at once, each item
    marked, sent and recorded once, under the one claim."""
    settings.BULKJOBS = {**settings.BULKJOBS, "EMAIL_CONNECTIONS": "3", "EMAIL_COMPANY_RATE": "0"}
    smtp_sink.delay = 0.02
    (job,) = make_companies(1, 30)
    summary = run_once(email_kind, concurrency=1, batch_size=30)
    assert (summary.batches, summary.items_succeeded) == (1, 30)
    assert smtp_sink.sessions == 3
    assert smtp_sink.max_in_flight >= 2
    recipients = smtp_sink.recipients()
    assert len(recipients) == len(set(recipients)) == 30
    job.refresh_from_db()
    assert (job.status, job.succeeded_items, job.claim_token) == ("completed", 30, None)
    assert set(job.items.values_list("attempts", flat=True)) == {1}


def test_a_lane_that_pauses_stops_the_batch_without_spending_attempts(
    smtp_sink, email_kind, settings
):
    settings.BULKJOBS = {**settings.BULKJOBS, "EMAIL_CONNECTIONS": "3", "EMAIL_COMPANY_RATE": "0"}
    smtp_sink.refused_senders.add("cards@example.com")
    (job,) = make_companies(1, 30)
    summary = run_once(email_kind, concurrency=1, batch_size=30)
    assert summary.items_attempted == 0 and summary.paused
    job.refresh_from_db()
    assert job.paused_at is not None and job.claim_token is None
    assert set(job.items.values_list("status", "attempts")) == {("pending", 0)}


def test_worker_threads_close_every_connection_they_opened(
    smtp_sink, email_kind, thread_connections
):
    make_companies(3, 2)
    run_once(email_kind, concurrency=3)
    assert len(thread_connections) >= 2
    assert all(conn.connection is None for conn in thread_connections)


def test_a_connection_lost_in_a_worker_thread_ends_the_run_and_reaches_the_caller(
    server_database, smtp_sink, email_kind
):
    make_companies(3, 4)
    main = threading.get_ident()
    ended = []

    def end_own_session_before_marking(execute, sql, params, many, context):
        if not ended and sql.startswith("UPDATE") and "bulk_email_job_items" in sql:
            ended.append(True)
            end_session(backend_id())  # the server ends this worker's session
        return execute(sql, params, many, context)

    def watch_worker_connections(sender, connection, **kwargs):
        if threading.get_ident() != main:
            connection.execute_wrappers.append(end_own_session_before_marking)

    run = Run(email_kind, concurrency=3)
    connection_created.connect(watch_worker_connections)
    try:
        with pytest.raises(outage.connection_error_types()) as raised:
            run.execute()
    finally:
        connection_created.disconnect(watch_worker_connections)
    # The caller's own connection is fine, yet it learns that the run lost one.
    assert outage.is_connection_lost(raised.value)
    assert run.held_claims, "the claims the run could not release are the caller's to release"
    # What the command does once the database answers: the jobs are free again at once.
    assert run.release_claims() >= 1
    assert not run.held_claims
    assert not BulkEmailJob.objects.filter(claim_token__isnull=False).exists()


def test_worker_threads_keep_their_connection_from_one_batch_to_the_next(
    smtp_sink, email_kind, thread_connections, settings
):
    # Three companies, three batches each, served by three threads: a connection per
    # thread, not per batch; all closed when the run ends.
    settings.BULKJOBS = {**getattr(settings, "BULKJOBS", {}), "EMAIL_COMPANY_RATE": "0"}
    make_companies(3, 6)
    summary = run_once(email_kind, concurrency=3, batch_size=2)
    assert (summary.batches, summary.items_succeeded) == (9, 18)
    assert 1 <= len(thread_connections) <= 3
    assert all(conn.connection is None for conn in thread_connections)


def test_a_run_holds_no_more_mail_connections_than_the_relay_allows(
    smtp_sink, email_kind, settings
):
    """EMAIL_MAX_CONNECTIONS=3 with 4 companies at once and 2 connections each: batches
    get one lane, and at most three companies talk to the relay at once."""
    settings.BULKJOBS = {
        **settings.BULKJOBS,
        "EMAIL_CONNECTIONS": "2",
        "EMAIL_MAX_CONNECTIONS": "3",
        "EMAIL_COMPANY_RATE": "0",
    }
    smtp_sink.delay = 0.03
    make_companies(4, 20)
    summary = run_once(email_kind, concurrency=4)
    assert summary.items_succeeded == 80
    assert 2 <= smtp_sink.max_in_flight <= 3
    assert smtp_sink.greetings <= 3


@pytest.mark.parametrize(
    ("concurrency", "lanes", "limit", "expected"),
    [
        (8, 2, 16, (8, 2)),  # the defaults: within the limit
        (20, 2, 16, (16, 1)),  # one lane each first, then fewer companies
        (2, 3, 5, (2, 2)),
        (4, 2, 3, (3, 1)),
        (8, 2, 1, (1, 1)),
    ],
)
def test_concurrency_and_lanes_are_cut_to_the_connection_limit(
    email_kind, settings, concurrency, lanes, limit, expected
):
    settings.BULKJOBS = {**settings.BULKJOBS, "EMAIL_MAX_CONNECTIONS": str(limit)}
    assert within_connection_limit(email_kind, concurrency, lanes) == expected
