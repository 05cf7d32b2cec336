"""Which database errors mean "the server is full" (bulkjobs.engine.outage.is_server_full),
by the drivers' own error classes and codes as the servers send them, and the backoff of
an outage that comes straight back. The real refusals, from real servers, are in
tests/concurrency/test_database_full.py."""

import time

import psycopg
import pymysql
import pytest
from django.db import utils

from bulkjobs.engine import outage


def wrapped(driver_error):
    """The error as Django raises it: its own class, the driver's behind it."""
    try:
        try:
            raise driver_error
        except Exception as exc:
            raise utils.OperationalError(*exc.args) from exc
    except utils.OperationalError as exc:
        return exc


PG_REFUSAL = 'connection failed: connection to server at "127.0.0.1", port 5432 failed: FATAL:  {}'


@pytest.mark.parametrize(
    "error, full",
    [
        # PostgreSQL, while connecting: libpq passes no SQLSTATE, only the server's words.
        (psycopg.OperationalError(PG_REFUSAL.format("sorry, too many clients already")), True),
        (psycopg.OperationalError(PG_REFUSAL.format('too many connections for role "app"')), True),
        (
            psycopg.OperationalError(
                PG_REFUSAL.format('too many connections for database "bizcards"')
            ),
            True,
        ),
        (
            psycopg.OperationalError(
                PG_REFUSAL.format(
                    "remaining connection slots are reserved for roles with the SUPERUSER attribute"
                )
            ),
            True,
        ),
        # ... and with the SQLSTATE, where a driver has it.
        (psycopg.errors.lookup("53300")("too many connections"), True),
        # Other refusals and errors are not "full".
        (psycopg.OperationalError(PG_REFUSAL.format("the database system is starting up")), False),
        (
            psycopg.OperationalError(
                PG_REFUSAL.format('password authentication failed for user "app"')
            ),
            False,
        ),
        (psycopg.errors.lookup("55P03")("lock not available"), False),
        (
            psycopg.errors.lookup("57P01")("terminating connection due to administrator command"),
            False,
        ),
        # MariaDB / MySQL, by error code.
        (pymysql.err.OperationalError(1040, "Too many connections"), True),
        (
            pymysql.err.OperationalError(
                1203, "User app already has more than 'max_user_connections' active connections"
            ),
            True,
        ),
        (
            pymysql.err.OperationalError(
                1226,
                "User 'app' has exceeded the 'max_user_connections' resource (current value: 3)",
            ),
            True,
        ),
        (
            pymysql.err.OperationalError(
                1226, "User 'app' has exceeded the 'max_questions' resource (current value: 1000)"
            ),
            False,
        ),
        (pymysql.err.OperationalError(2003, "Can't connect to MySQL server on '127.0.0.1'"), False),
        (pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock"), False),
        (ValueError("too many clients already"), False),
    ],
)
def test_a_full_server_is_told_by_its_code(error, full):
    assert outage.is_server_full(error) is full
    assert outage.is_server_full(wrapped(error)) is full


def test_an_outage_that_comes_back_waits_before_trying_again():
    tried = []
    started = time.monotonic()
    result = outage.when_database_answers(
        lambda: tried.append(True),
        should_stop=lambda: time.monotonic() - started > 0.5,
        delays=iter([5.0]),
        wait_first=True,
    )
    # It waited for the next delay (5 s) before anything, until stopped: no try at once.
    assert result is None and tried == []
    assert time.monotonic() - started >= 0.5
