"""A schema behind the code: /healthz and the commands say so (bulkjobs/ops/schema.py).

In process, the test database lacks a migration only in its records (the migration's row
in django_migrations is deleted inside the test's transaction): what `migrate` and the
checks read. The real thing, a database migrated back and real processes, is in
tests/processes/engine/test_schema_behind.py.
"""

import logging

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder

from bulkjobs.ops import schema
from bulkjobs.ops.health import check

pytestmark = pytest.mark.django_db


@pytest.fixture
def behind(db):
    """The database as if `migrate` had not applied bulkjobs' latest migration; its name."""
    [(app, name)] = MigrationLoader(None).graph.leaf_nodes("bulkjobs")
    MigrationRecorder(connection).record_unapplied(app, name)
    return f"{app}.{name}"


def error_of(sql):
    with pytest.raises(DatabaseError) as caught, transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(sql)
    return caught.value


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT no_such_column FROM bulk_email_jobs",
        "SELECT id FROM no_such_table",
        "INSERT INTO bulk_email_jobs (no_such_column) VALUES (1)",
        "UPDATE bulk_email_jobs SET no_such_column = 1",
    ],
)
def test_a_missing_table_or_column_is_told_apart(sql):
    assert schema.is_missing_schema(error_of(sql))


@pytest.mark.parametrize(
    "sql",
    [
        "SELEC 1",
        # A NOT NULL column left out, on purpose here: not a missing column.
        "INSERT INTO bulkjobs_processorrun (kind) VALUES ('x')",
    ],
)
def test_other_errors_are_not_a_missing_schema(sql):
    assert not schema.is_missing_schema(error_of(sql))


def test_the_migrations_are_all_applied_in_the_test_database():
    assert schema.unapplied_migrations() == []


def test_healthz_says_the_schema_is_behind(client, behind):
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert (body["status"], body["database"], body["schema"]) == ("fail", "ok", "behind")
    assert check().problems[0] == (
        "The database schema is behind this release: run `manage.py migrate` "
        f"(1 unapplied migration: {behind})."
    )


def test_healthz_says_the_schema_is_ok_when_it_is(client):
    assert client.get("/healthz").json()["schema"] == "ok"


@pytest.mark.parametrize(
    "command", [["check_processors"], ["prune_jobs"], ["cancel_job", "email", "1"]]
)
def test_a_command_stops_at_once_with_one_line_and_exit_code_3(command, behind, caplog):
    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as caught:
        call_command(*command)
    assert caught.value.code == schema.SCHEMA_BEHIND == 3
    assert [record.getMessage() for record in caplog.records] == [
        "The database schema is behind this release: run `manage.py migrate` "
        f"(1 unapplied migration: {behind})."
    ]


def test_a_processing_run_does_not_look_until_a_query_fails(behind, capsys):
    # The column the missing migration added is there after all: nothing fails, and
    # the idle cron run pays for no check.
    call_command("process_email_jobs")
    assert "email: served 0 companies" in capsys.readouterr().out
