"""A transaction left open on a job's or an item's row (a forgotten BEGIN in psql) costs
its company the run, and nobody else anything.

The blocker is a real second session of the test database that locks rows and keeps its
transaction open, as a person in psql would; the run is a single worker serving one
company at a time, so a run that waited for the lock would hold up every company.
"""

import logging
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from bulkjobs.engine import Run, locks
from bulkjobs.engine.workers import Registration
from bulkjobs.models import Status
from cards.models import Company
from emails.models import BulkEmailJob, BulkEmailJobItem
from tests.conftest import make_email_job

pytestmark = [pytest.mark.server_db, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def server_database(db):
    if connection.vendor == "sqlite":
        pytest.skip("needs PostgreSQL or MariaDB: SQLite locks the whole file, not rows")


@pytest.fixture
def short_lock_timeout(server_database, settings):
    settings.BULKJOBS = {**settings.BULKJOBS, "LOCK_TIMEOUT_SECONDS": "1"}
    # A fresh connection, so the run gives it the short timeout. One an earlier test used
    # may say its timeouts are set (locks.apply_session_timeouts) when they are not: set
    # inside that test's transaction, PostgreSQL dropped them with its rollback.
    connection.close()
    yield
    # The test's connection carries the short timeout: the next test starts a new one.
    connection.close()


class Blocker:
    """A session of the test database, outside Django, that holds row locks in an open
    transaction until rollback()."""

    def __init__(self):
        self.raw = connection.get_new_connection(connection.get_connection_params())
        postgresql = connection.vendor == "postgresql"
        if postgresql:
            self.raw.autocommit = True
        else:
            self.raw.autocommit(True)
        self.cursor = self.raw.cursor()
        self.cursor.execute("SELECT pg_backend_pid()" if postgresql else "SELECT CONNECTION_ID()")
        self.pid = self.cursor.fetchone()[0]
        self.begin = "BEGIN" if postgresql else "START TRANSACTION"

    def lock(self, model, pk):
        if self.begin:
            self.cursor.execute(self.begin)
            self.begin = None
        table = connection.ops.quote_name(model._meta.db_table)
        self.cursor.execute(f"SELECT id FROM {table} WHERE id = %s FOR UPDATE", [pk])  # noqa: S608
        assert self.cursor.fetchone() == (pk,)
        return self

    def rollback(self):
        self.cursor.execute("ROLLBACK")
        self.raw.close()


def company_job(n, recipients):
    company = Company.objects.create(name=f"Company {n}", slug=f"company-{n}")
    return make_email_job(company, recipients)


def statuses(job):
    return list(
        BulkEmailJobItem.objects.filter(job_id=job.pk)
        .order_by("pk")
        .values_list("status", flat=True)
    )


def warnings_about(caplog, job):
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.getMessage().startswith(f"Job {job.pk}: locked by")
    ]


def test_a_locked_job_passes_its_company_over_and_the_others_are_served(
    short_lock_timeout, smtp_sink, email_kind, caplog
):
    locked, *others = [company_job(n, 3) for n in range(3)]
    blocker = Blocker().lock(BulkEmailJob, locked.pk)
    try:
        summary = Run(email_kind, concurrency=1).execute()
    finally:
        blocker.rollback()

    assert summary.items_succeeded == 6
    for job in others:
        assert statuses(job) == [Status.COMPLETED] * 3
    assert statuses(locked) == [Status.PENDING] * 3
    locked.refresh_from_db()
    assert (locked.status, locked.claim_token) == (Status.PENDING, None)
    assert len(smtp_sink.recipients()) == 6
    [line] = warnings_about(caplog, locked)
    assert "its company is passed over in this run" in line
    assert f" {blocker.pid} (" in line  # the blocking session, by its pid

    # The lock is gone: the next run serves the company.
    Run(email_kind, concurrency=1).execute()
    assert statuses(locked) == [Status.COMPLETED] * 3
    assert len(set(smtp_sink.recipients())) == 9


def test_a_locked_item_stops_the_batch_and_what_it_did_is_written(
    short_lock_timeout, smtp_sink, email_kind, caplog
):
    job = company_job(1, 5)
    other = company_job(2, 2)
    items = list(BulkEmailJobItem.objects.filter(job_id=job.pk).order_by("pk"))
    blocker = Blocker().lock(BulkEmailJobItem, items[2].pk)
    try:
        Run(email_kind, concurrency=1).execute()
    finally:
        blocker.rollback()

    # Two emails went out before the third item's mark waited for its row; both are
    # written (the second's outcome travelled with that mark, so it was written at the
    # end of the run), the job's counters say so, and its claim is released.
    assert statuses(job) == [Status.COMPLETED] * 2 + [Status.PENDING] * 3
    assert statuses(other) == [Status.COMPLETED] * 2
    job.refresh_from_db()
    assert job.claim_token is None
    assert (job.status, job.succeeded_items, job.failed_items) == (Status.PROCESSING, 2, 0)
    assert sorted(smtp_sink.recipients()) == sorted(
        [items[0].recipient_email, items[1].recipient_email]
        + list(
            BulkEmailJobItem.objects.filter(job_id=other.pk).values_list(
                "recipient_email", flat=True
            )
        )
    )
    [line] = warnings_about(caplog, job)
    assert "its batch stopped" in line and f" {blocker.pid} (" in line

    Run(email_kind, concurrency=1).execute()
    assert statuses(job) == [Status.COMPLETED] * 5
    recipients = smtp_sink.recipients()
    assert len(recipients) == len(set(recipients)) == 7


def test_a_claim_still_locked_at_the_end_of_a_run_goes_to_the_workers_next_run(
    short_lock_timeout, smtp_sink, email_kind
):
    job = company_job(1, 3)
    first, second, _third = BulkEmailJobItem.objects.filter(job_id=job.pk).order_by("pk")
    worker = Registration("email")
    blocker = Blocker()

    def lock_while_the_first_email_is_sent():
        # Once the first item is marked (its email is on its way, slowly), lock the job's
        # row and the second item's: the run can neither mark the second item nor, by
        # the end of the run, recount the job and release its claim.
        select = "SELECT status FROM bulk_email_job_items WHERE id = %s"
        while True:
            blocker.cursor.execute(select, [first.pk])
            if blocker.cursor.fetchone()[0] == Status.PROCESSING:
                break
            time.sleep(0.01)
        blocker.lock(BulkEmailJob, job.pk).lock(BulkEmailJobItem, second.pk)

    smtp_sink.delay = 0.5
    locker = threading.Thread(target=lock_while_the_first_email_is_sent)
    locker.start()
    try:
        Run(email_kind, concurrency=1, owner=worker).execute()
        locker.join()
        job.refresh_from_db()
        assert job.claim_token is not None and job.claim_owner == worker.id
        assert statuses(job)[1:] == [Status.PENDING] * 2
    finally:
        locker.join()
        blocker.rollback()
    smtp_sink.delay = 0
    try:
        # The worker's next run writes what is left, recounts the job and releases its
        # claim; the one after serves the job again.
        Run(email_kind, concurrency=1, owner=worker).execute()
        Run(email_kind, concurrency=1, owner=worker).execute()
    finally:
        worker.end()
    assert statuses(job) == [Status.COMPLETED] * 3
    job.refresh_from_db()
    assert (job.status, job.succeeded_items, job.claim_token) == (Status.COMPLETED, 3, None)
    recipients = smtp_sink.recipients()
    assert len(recipients) == len(set(recipients)) == 3


def test_timeouts_are_told_from_other_errors(server_database):
    from django.db import OperationalError

    sql = {
        "postgresql": "DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = 'lock_not_available'; END $$",
        "mysql": "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'busy'",
    }[connection.vendor]
    with pytest.raises(OperationalError) as error, connection.cursor() as cursor:
        cursor.execute(sql)
    assert locks.is_timeout(error.value) == (connection.vendor == "postgresql")


def test_the_rescue_passes_a_locked_job_over_and_the_others_are_served(
    short_lock_timeout, smtp_sink, email_kind, caplog
):
    stuck, *others = [company_job(n, 2) for n in range(3)]
    # A dead run's claim, its heartbeat 20 minutes old: the rescue would release it.
    BulkEmailJob.objects.filter(pk=stuck.pk).update(
        status=Status.PROCESSING,
        claim_token="dead-run",
        claimed_at=timezone.now() - timedelta(minutes=20),
        heartbeat_at=timezone.now() - timedelta(minutes=20),
    )
    blocker = Blocker().lock(BulkEmailJob, stuck.pk)
    try:
        summary = Run(email_kind, concurrency=1).execute()
    finally:
        blocker.rollback()

    # The rescue waited for the row once, then went on: the other companies were served.
    assert summary.claims_released == 0
    for job in others:
        assert statuses(job) == [Status.COMPLETED] * 2
    stuck.refresh_from_db()
    assert stuck.claim_token == "dead-run"
    [line] = warnings_about(caplog, stuck)
    assert "its stale claim is released by a later run" in line and f" {blocker.pid} (" in line

    # The row is free: the next run releases the claim and serves the job.
    Run(email_kind, concurrency=1).execute()
    assert statuses(stuck) == [Status.COMPLETED] * 2
