"""A database server that is full (no connection slot left) refuses a run's worker threads:
the run carries on with the connections it has, serving fewer companies at once, and
harms no job; /healthz says the database is full, not unreachable.

A real server with a real limit: an account of the test database that may hold only a
few connections (tests/db_connection_limit.py), so the shared server itself is never
filled. The test's own connection (the run's main thread) keeps its account.
"""

import logging
import threading

import pytest
from django.db import connection
from django.test import Client

from bulkjobs.engine import Run, outage
from bulkjobs.engine.turns import Concurrency
from bulkjobs.models import Status
from cards.models import Company
from emails.models import BulkEmailJob, BulkEmailJobItem
from tests.conftest import make_email_job
from tests.db_connection_limit import (
    as_account,
    limited_account,
    open_raw_connection,
    server_database,
)

pytestmark = [pytest.mark.server_db, pytest.mark.django_db(transaction=True)]

__all__ = ["server_database"]  # a fixture used below


@pytest.fixture
def two_connections(server_database):
    """New connections use an account that may hold two at once."""
    with limited_account(2) as name, as_account(name):
        yield name


def make_companies(count, emails):
    return [
        make_email_job(Company.objects.create(name=f"Company {n}", slug=f"company-{n}"), emails)
        for n in range(count)
    ]


def assert_sent_once_and_done(smtp_sink, jobs, emails):
    recipients = smtp_sink.recipients()
    assert len(recipients) == len(set(recipients)) == len(jobs) * emails
    assert set(BulkEmailJob.objects.values_list("status", "claim_token")) == {
        (Status.COMPLETED, None)
    }
    assert set(BulkEmailJobItem.objects.values_list("status", "attempts")) == {
        (Status.COMPLETED, 1)
    }


def test_a_real_refusal_is_told_from_other_errors(two_connections):
    held = [open_raw_connection(two_connections) for _ in range(2)]
    try:
        with pytest.raises(Exception) as refused:
            open_raw_connection(two_connections)
    finally:
        for raw in held:
            raw.close()
    assert outage.is_server_full(refused.value)


def test_a_run_the_database_refuses_threads_serves_fewer_companies_and_harms_no_job(
    two_connections, smtp_sink, email_kind, settings, caplog, thread_connections
):
    # Two provider connections per batch: lanes beyond the first have threads (and
    # database connections) of their own too.
    settings.BULKJOBS = {**settings.BULKJOBS, "EMAIL_CONNECTIONS": "2", "EMAIL_COMPANY_RATE": "0"}
    smtp_sink.delay = 0.01
    jobs = make_companies(8, 24)
    caplog.set_level(logging.INFO, logger=email_kind.log_name)

    run = Run(email_kind, concurrency=6)
    summary = run.execute()

    assert summary.items_succeeded == 8 * 24 and summary.jobs_completed == 8
    assert_sent_once_and_done(smtp_sink, jobs, 24)
    # Lowered once for the threads refused together, and once or twice more for those
    # it started after, not once per refused thread or per batch.
    lowered = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Database full")]
    assert lowered[0].startswith("Database full: serving 3 companies at once instead of 6 (")
    assert "too many connections" in lowered[0].lower() or "1226" in lowered[0]
    assert 1 <= len(lowered) <= 4
    assert run.concurrency < 6
    assert 1 <= run.refused <= 12
    # Never more connections than the account allows, each thread's opened once.
    assert len(thread_connections) <= 2 + run.refused
    assert all(conn.connection is None for conn in thread_connections)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_lane_the_database_refuses_leaves_its_items_due_for_the_next_batch(
    server_database, smtp_sink, email_kind, settings, caplog
):
    # One company at a time, served on the test's own connection; three provider
    # connections per batch, so two lanes of each batch need threads: the account allows
    # one of them.
    settings.BULKJOBS = {**settings.BULKJOBS, "EMAIL_CONNECTIONS": "3", "EMAIL_COMPANY_RATE": "0"}
    smtp_sink.delay = 0.02
    jobs = make_companies(1, 30)
    with limited_account(1) as name, as_account(name):
        run = Run(email_kind, concurrency=1, batch_size=30)
        summary = run.execute()

    assert run.refused == 1
    lowered = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Database full")]
    assert len(lowered) == 1
    assert lowered[0].startswith("Database full: one provider connection per batch instead of 3 (")
    # The refused lane's ten items were left due, and the next batch sent them.
    assert summary.batches == 2 and summary.items_succeeded == 30
    assert_sent_once_and_done(smtp_sink, jobs, 30)


def test_a_worker_remembers_the_lower_concurrency_and_raises_it_one_by_one(
    server_database, smtp_sink, email_kind, settings
):
    settings.BULKJOBS = {**settings.BULKJOBS, "EMAIL_COMPANY_RATE": "0"}
    concurrency = Concurrency(email_kind, 6)
    make_companies(6, 3)
    with limited_account(2) as name, as_account(name):
        run = Run(email_kind, **concurrency.options)
        run.execute()
    concurrency.after_run(run)
    assert run.refused and concurrency.concurrency == run.concurrency < 6
    lowered = concurrency.concurrency

    # The database has room again: one more company at once per run that served some.
    for more in range(1, 3):
        Company.objects.all().delete()
        make_companies(6, 1)
        run = Run(email_kind, **concurrency.options)
        run.execute()
        concurrency.after_run(run)
        assert run.refused == 0
        assert concurrency.concurrency == lowered + more
    # A run with nothing to do says nothing of the room there is.
    run = Run(email_kind, **concurrency.options)
    run.execute()
    concurrency.after_run(run)
    assert concurrency.concurrency == lowered + 2


def test_healthz_says_the_database_is_full(two_connections):
    held = [open_raw_connection(two_connections) for _ in range(2)]
    answers = []

    def get_healthz():
        # A thread of its own: a new connection, as a web worker's, as the full account.
        try:
            answers.append(Client().get("/healthz"))
        finally:
            connection.close()

    try:
        thread = threading.Thread(target=get_healthz)
        thread.start()
        thread.join()
    finally:
        for raw in held:
            raw.close()
    [response] = answers
    assert response.status_code == 503
    assert response.json() == {
        "status": "fail",
        "database": "full (too many connections)",
        "schema": "unknown",
        "processors": {},
    }
