"""A database server that is full (no connection slot left) refuses a run's worker threads:
the run carries on with the connections it has, serving fewer companies at once, and
harms no job; /healthz says the database is full, not unreachable.

A real server with a real limit: an account of the test database that may hold only a
few connections (tests/db_connection_limit.py), so the shared server itself is never
filled. The test's own connection (the run's main thread) keeps its account.
"""

import threading

import pytest
from django.db import connection
from django.db.backends.signals import connection_created
from django.test import Client

from bulkjobs.engine import outage
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


@pytest.fixture
def thread_connections():
    """Connections opened by threads other than the test's (each refusal is not one)."""
    opened = []
    main = threading.get_ident()

    def note(sender, connection, **kwargs):
        if threading.get_ident() != main:
            opened.append(connection)

    connection_created.connect(note)
    yield opened
    connection_created.disconnect(note)


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
        "processors": {},
    }
