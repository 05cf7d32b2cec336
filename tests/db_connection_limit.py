"""A database account of the test database that may hold only a few connections at once:
how a test makes a real server refuse connections because it is "full" without filling
the shared server (max_connections) and disturbing everyone else on it.

PostgreSQL: a role with CONNECTION LIMIT (refused with SQLSTATE 53300, "too many
connections for role"); MariaDB/MySQL: a user WITH MAX_USER_CONNECTIONS (error 1226).
Connections the test thread already holds keep their own account; the connections opened
while `as_account()` is active (worker threads, a new subprocess's DATABASE_URL) use the
limited one.
"""

import os
from contextlib import contextmanager

import pytest
from django.db import connection


@pytest.fixture
def server_database(db):
    if connection.vendor == "sqlite":
        pytest.skip("needs PostgreSQL or MariaDB: SQLite has no connections to limit")


@contextmanager
def limited_account(connections_allowed):
    """Create the account; yields its name. Dropped afterwards, its sessions ended."""
    name = f"bizcards_full_{os.getpid()}"
    database = connection.settings_dict["NAME"]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"DROP ROLE IF EXISTS {name}")
            cursor.execute(f"CREATE ROLE {name} LOGIN CONNECTION LIMIT {int(connections_allowed)}")
            cursor.execute(f"GRANT pg_read_all_data, pg_write_all_data TO {name}")
        else:
            for host in ("%", "localhost"):
                cursor.execute(f"DROP USER IF EXISTS '{name}'@'{host}'")
                cursor.execute(
                    f"CREATE USER '{name}'@'{host}' "
                    f"WITH MAX_USER_CONNECTIONS {int(connections_allowed)}"
                )
                cursor.execute(f"GRANT ALL ON `{database}`.* TO '{name}'@'{host}'")
    try:
        yield name
    finally:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(
                    "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                    "WHERE usename = %s",
                    [name],
                )
                cursor.execute(f"DROP ROLE IF EXISTS {name}")
            else:
                cursor.execute(
                    "SELECT id FROM information_schema.processlist WHERE user = %s", [name]
                )
                for (session,) in cursor.fetchall():
                    cursor.execute(f"KILL {int(session)}")
                for host in ("%", "localhost"):
                    cursor.execute(f"DROP USER IF EXISTS '{name}'@'{host}'")


@contextmanager
def as_account(name):
    """New connections (every thread's, and database_url() for subprocesses) log in as
    `name`, without a password, until the block ends."""
    settings_dict = connection.settings_dict
    before = settings_dict["USER"], settings_dict["PASSWORD"]
    settings_dict["USER"], settings_dict["PASSWORD"] = name, ""
    try:
        yield
    finally:
        settings_dict["USER"], settings_dict["PASSWORD"] = before


def open_raw_connection(name):
    """A driver connection of the test database as `name` (outside Django's bookkeeping):
    to take one of the account's slots."""
    params = connection.get_connection_params()
    params["user"] = name
    params.pop("password", None)
    return connection.get_new_connection(params)
