"""Telling a lost database connection from other errors, and waiting for the database.

A processing command whose database restarts (an upgrade, a failover) sees its next
query fail with an OperationalError or InterfaceError. Django wraps the driver's own
exceptions (psycopg's "the connection is closed", PyMySQL's "Lost connection to MySQL
server") in django.db's classes; the driver's classes are listed too for the few calls
Django does not wrap. The same classes also cover errors that are not about the
connection (a MariaDB deadlock, a missing SQLite table), so an error only counts as a
lost connection when the driver says the engine's connection is gone.
"""

import time

from django.db import InterfaceError, OperationalError, connection, connections

# Seconds between attempts to reach the database again: doubled after each failure.
FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 30.0


def connection_error_types():
    """The exception classes a dropped or refused connection raises on this backend."""
    database = connection.Database
    return (OperationalError, InterfaceError, database.OperationalError, database.InterfaceError)


def is_connection_lost(exc):
    """True if exc means the database connection is gone (not, say, a deadlock).

    Call it right after catching exc: it looks at the connection the error left behind,
    the current thread's, unless a worker thread already said so (mark_connection_lost).
    """
    if getattr(exc, "database_connection_lost", False):
        return True
    return isinstance(exc, connection_error_types()) and connection_lost()


def mark_connection_lost(exc):
    """Note on exc that its thread's connection was lost, for the thread it is re-raised
    in: that thread's own connection may look fine, or not have been used lately."""
    exc.database_connection_lost = True


def connection_lost():
    """True when the default connection is gone: never opened (refused) or dropped.

    Asks the driver rather than Django's is_usable(): PyMySQL's ping() silently
    reconnects, and on PostgreSQL a query fails in an aborted transaction too.
    """
    raw = connection.connection
    if raw is None:
        return True
    if connection.vendor == "postgresql":
        # psycopg 3 tells a dropped connection apart (broken); psycopg2's closed is 2 then.
        return bool(raw.closed or getattr(raw, "broken", False))
    if connection.vendor == "mysql":
        # PyMySQL drops its socket on any error that lost the connection.
        return not raw.open
    return not connection.is_usable()


def close_connections():
    """Close every database connection of this thread, even those on a dead socket.

    Closing a connection whose server went away may itself raise; the connection is
    dropped either way (Django forgets it in close()'s finally clause).
    """
    for conn in connections.all(initialized_only=True):
        try:
            conn.close()
        except connection_error_types():
            pass


def database_answers():
    """Open a fresh connection and run a trivial query; True if the database answered."""
    close_connections()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except connection_error_types():
        close_connections()
        return False


def retry_delays():
    """1, 2, 4 ... seconds, then every MAX_RETRY_SECONDS."""
    delay = FIRST_RETRY_SECONDS
    while True:
        yield delay
        delay = min(delay * 2, MAX_RETRY_SECONDS)


def describe(exc):
    """The first connection error behind exc, on one line.

    Cleaning up after the first error (releasing the claim in a `finally`) raises again
    with a vaguer message ("the connection is closed"); the first one says what happened.
    """
    while isinstance(exc.__context__, connection_error_types()):
        exc = exc.__context__
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def when_database_answers(action, *, should_stop, deadline=None):
    """Wait until the database answers, then return action()'s result (never None).

    Tries at once (a connection killed on its own, by a proxy or an idle timeout, is
    back at once), then after 1, 2, 4 ... seconds; an action that loses the connection
    again is tried again. Returns None when it gave up: should_stop() turned true or
    the monotonic deadline passed.
    """
    delays = retry_delays()
    while True:
        if database_answers():
            try:
                return action()
            except connection_error_types():
                close_connections()
        delay = next(delays)
        if deadline is not None:
            delay = min(delay, deadline - time.monotonic())
            if delay <= 0:
                return None
        end = time.monotonic() + delay
        while time.monotonic() < end:
            if should_stop():
                return None
            time.sleep(min(0.2, end - time.monotonic()))
