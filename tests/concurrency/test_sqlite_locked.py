"""An SQLite file whose write lock another connection keeps (an open `BEGIN IMMEDIATE` in
the sqlite3 shell) stops a run with one line that says so, not a traceback."""

import logging
import sqlite3

import pytest
from django.core.management import call_command
from django.db import connection

from cards.models import Company
from tests.conftest import make_email_job

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def short_busy_timeout():
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only: a server database locks rows, not the file")
    options = connection.settings_dict.setdefault("OPTIONS", {})
    before = options.get("timeout")
    options["timeout"] = 0.5
    connection.close()
    yield
    options["timeout"] = before
    connection.close()


def test_a_locked_sqlite_file_stops_the_run_with_one_line(short_busy_timeout, caplog):
    job = make_email_job(Company.objects.create(name="Acme", slug="acme"), 2)
    holder = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as caught:
            call_command("process_email_jobs")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert caught.value.code == 1
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    message = record.getMessage()
    assert message.startswith("This run stopped: a statement ran into a timeout")
    assert "another connection holds the SQLite file's write lock" in message
    assert record.exc_info is None
    # The file is free again: the next run sends.
    call_command("process_email_jobs")
    job.refresh_from_db()
    assert job.status == "completed"
