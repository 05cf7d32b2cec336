"""Telling a lost database connection from other database errors, on a real server.

The run's own connection is ended from another connection (pg_terminate_backend,
MariaDB's KILL), exactly what the server does to its sessions when it shuts down.
"""

import threading

import pytest
from django.core.management import call_command
from django.db import OperationalError, connection

from bulkjobs.engine import outage, run_once
from bulkjobs.models import Status
from emails.models import BulkEmailJobItem
from tests.conftest import make_email_job

pytestmark = pytest.mark.django_db(transaction=True)

# A statement that fails with an OperationalError and leaves the connection working.
FAILING_BUT_CONNECTED_SQL = {
    "sqlite": "SELECT * FROM no_such_table",
    "postgresql": "DO $$ BEGIN RAISE EXCEPTION 'busy' USING ERRCODE = 'lock_not_available'; END $$",
    "mysql": "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'busy'",
}


@pytest.fixture
def server_database(db):
    if connection.vendor == "sqlite":
        pytest.skip("needs PostgreSQL or MariaDB: an SQLite connection has no session to end")


def backend_id():
    """The server's id of this thread's connection."""
    sql = (
        "SELECT pg_backend_pid()" if connection.vendor == "postgresql" else "SELECT CONNECTION_ID()"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]


def end_session(backend):
    """End a session from another connection (a thread has its own), as a shutdown does."""

    def run():
        from django.db import connection as own_connection

        try:
            with own_connection.cursor() as cursor:
                if own_connection.vendor == "postgresql":
                    # The timeout makes it wait until the session is really gone.
                    cursor.execute("SELECT pg_terminate_backend(%s, 5000)", [backend])
                else:
                    cursor.execute(f"KILL {int(backend)}")
        finally:
            own_connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()


def test_retry_delays_double_up_to_thirty_seconds():
    delays = outage.retry_delays()
    assert [next(delays) for _ in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]


def test_an_error_on_a_working_connection_is_not_a_lost_connection():
    with pytest.raises(OperationalError) as error:
        with connection.cursor() as cursor:
            cursor.execute(FAILING_BUT_CONNECTED_SQL[connection.vendor])
    assert not outage.is_connection_lost(error.value)
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


@pytest.mark.server_db
def test_an_ended_session_is_a_lost_connection(server_database):
    end_session(backend_id())
    with pytest.raises(outage.connection_error_types()) as error:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    assert outage.is_connection_lost(error.value)
    assert outage.database_answers()
    assert not outage.connection_lost()


@pytest.mark.server_db
@pytest.mark.parametrize("mark_ahead", ["1", "5"])
def test_a_run_that_loses_its_connection_mid_batch_releases_its_claim_and_exits_with_one_line(
    server_database, company, smtp_sink, email_kind, caplog, settings, mark_ahead
):
    # With MARK_AHEAD 5 the lane sends the rest of its group before its next statement
    # meets the ended session: the outcomes it knew are written all the same.
    settings.BULKJOBS = {**settings.BULKJOBS, "MARK_AHEAD": mark_ahead}
    job = make_email_job(company, 6)
    victim = backend_id()

    def end_run_session_once(received):
        smtp_sink.on_message = None
        end_session(victim)

    # While the server accepts the first message, the run's session is ended: the run
    # cannot record that message's outcome.
    smtp_sink.on_message = end_run_session_once
    with pytest.raises(SystemExit) as exit_status:
        call_command("process_email_jobs")
    assert exit_status.value.code == 1
    [message] = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert "\n" not in message
    assert message.startswith("The database did not answer (")
    assert "Released its 1 claimed job(s)" in message

    job.refresh_from_db()
    assert job.claim_token is None
    assert job.status == Status.PROCESSING
    # The run knew which messages were accepted (the first; with MARK_AHEAD 5 the first
    # five): it wrote that once the database answered again, before releasing the claim.
    # The item it was marking when the session ended went back. Nothing is left
    # "delivery unknown".
    sent = 1 if mark_ahead == "1" else 5
    items = BulkEmailJobItem.objects.filter(job=job)
    assert len(smtp_sink.recipients()) == sent
    completed = items.filter(status=Status.COMPLETED).values_list("recipient_email", flat=True)
    assert sorted(completed) == sorted(smtp_sink.recipients())
    assert items.filter(status=Status.PENDING, attempts=0).count() == 6 - sent

    # The next run goes on at once; the first email is not resent.
    run_once(email_kind)
    job.refresh_from_db()
    assert (job.status, job.succeeded_items, job.failed_items) == (Status.COMPLETED, 6, 0)
    recipients = smtp_sink.recipients()
    assert len(recipients) == len(set(recipients)) == 6
