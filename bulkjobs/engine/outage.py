"""Telling a lost database connection from other errors, and waiting for the database.

A processing command whose database restarts (an upgrade, a failover) sees its next
query fail with an OperationalError or InterfaceError. Django wraps the driver's own
exceptions (psycopg's "the connection is closed", PyMySQL's "Lost connection to MySQL
server") in django.db's classes; the driver's classes are listed too for the few calls
Django does not wrap. The same classes also cover errors that are not about the
connection (a MariaDB deadlock, a missing SQLite table), so an error only counts as a
lost connection when the driver says the engine's connection is gone.

A database whose disk is full (is_disk_full()) answers but cannot write: a command
waits for space as for a lost connection (is_outage() covers both).

A server that is up but full refuses new connections (is_server_full()): a worker thread
that gets no connection did nothing, and the run carries on with the connections it has
(bulkjobs.engine.run.Run.connection_refused); a run whose own connection is refused
waits with backoff like any other outage, and says the server is full.
"""

import time

from django.db import InterfaceError, OperationalError, connection, connections

# Seconds between attempts to reach the database again: doubled after each failure.
FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 30.0

#: PostgreSQL's SQLSTATE for a server (max_connections), role or database (CONNECTION
#: LIMIT) with no connection slot left: too_many_connections.
TOO_MANY_CONNECTIONS_SQLSTATE = "53300"
#: The server's messages of that SQLSTATE. libpq passes no SQLSTATE for an error while
#: connecting, only the message (psycopg's error then has sqlstate None): "sorry, too many
#: clients already", "too many connections for role/database ...", "remaining connection
#: slots are reserved for ..." (the slots kept for superusers). A server whose lc_messages
#: is not English words them otherwise: its refusals count as an outage (with backoff).
POSTGRESQL_FULL_MESSAGES = (
    "too many clients already",
    "too many connections for ",
    "remaining connection slots are reserved",
)
#: MariaDB/MySQL error codes of a refused connection for lack of room: 1040
#: ER_CON_COUNT_ERROR (max_connections), 1203 ER_TOO_MANY_USER_CONNECTIONS (the global
#: max_user_connections); 1226 ER_USER_LIMIT_REACHED counts when the resource it names is
#: an account's connections (MAX_USER_CONNECTIONS), not its queries per hour.
MYSQL_FULL_CODES = (1040, 1203)
MYSQL_USER_LIMIT_CODE = 1226
#: SQLite's result code when a write finds no room: SQLITE_FULL.
SQLITE_FULL = 13
#: PostgreSQL's SQLSTATE for a full disk: disk_full.
DISK_FULL_SQLSTATE = "53100"
#: MariaDB/MySQL: 1021 ER_DISK_FULL, 1114 ER_RECORD_FILE_FULL ("The table is full").
MYSQL_DISK_FULL_CODES = (1021, 1114)


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


def is_outage(exc):
    """True if exc means the database cannot be used now and the command should wait for
    it: its connection is gone (is_connection_lost) or its disk is full (is_disk_full).
    Call it right after catching exc, as is_connection_lost."""
    return is_connection_lost(exc) or is_disk_full(exc)


def is_disk_full(exc):
    """True if exc (or an error behind it) says the database cannot write for lack of
    disk space: SQLite's SQLITE_FULL ("database or disk is full"), PostgreSQL's disk_full,
    MariaDB/MySQL's "disk full" and "table is full". The connection is fine and reads
    work; writes fail until space returns."""
    for error in _chain(exc):
        if getattr(error, "sqlite_errorcode", None) == SQLITE_FULL:
            return True
        if (
            getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
        ) == DISK_FULL_SQLSTATE:
            return True
        args = getattr(error, "args", ())
        if args and isinstance(args[0], int) and args[0] in MYSQL_DISK_FULL_CODES:
            return True
    return False


def is_server_full(exc):
    """True if exc (or an error behind it) says the database server refused a connection
    because it has no room for another: by its SQLSTATE or error code (see above). The
    connection was never opened, so nothing was done on it."""
    for error in _chain(exc):
        code = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
        if code == TOO_MANY_CONNECTIONS_SQLSTATE:
            return True
        args = getattr(error, "args", ())
        number = args[0] if args else None
        if isinstance(number, int) and not isinstance(number, bool):
            if number in MYSQL_FULL_CODES:
                return True
            if number == MYSQL_USER_LIMIT_CODE and "max_user_connections" in str(args[1:]):
                return True
        elif code is None and _refused_at_connection_by_postgresql(error):
            return True
    return False


def _refused_at_connection_by_postgresql(error):
    """A psycopg error raised while connecting (no SQLSTATE reaches it) that carries the
    server's too_many_connections message."""
    if type(error).__module__.split(".")[0] not in ("psycopg", "psycopg2"):
        return False
    pgconn = getattr(error, "pgconn", None)
    if pgconn is not None and getattr(pgconn, "backend_pid", 0):
        return False  # an open session: not a refusal at connection time
    text = str(error)
    return any(message in text for message in POSTGRESQL_FULL_MESSAGES)


def _chain(exc):
    """exc and the exceptions behind it (Django's wrapper, then the driver's)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


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


def when_database_answers(action, *, should_stop, deadline=None, delays=None, wait_first=False):
    """Wait until the database answers, then return action()'s result (never None).

    Tries at once (a connection killed on its own, by a proxy or an idle timeout, is
    back at once), then after 1, 2, 4 ... seconds; an action that loses the connection
    again is tried again. `delays` are those waits (retry_delays()): the caller keeps them
    for an outage that seemed over but came straight back, and goes on with them, with
    `wait_first`, instead of trying at once again. Returns None when it gave up:
    should_stop() turned true or the monotonic deadline passed.
    """
    if delays is None:
        delays = retry_delays()
    if wait_first and not _wait(next(delays), should_stop, deadline):
        return None
    while True:
        if database_answers():
            try:
                return action()
            except connection_error_types():
                close_connections()
        if not _wait(next(delays), should_stop, deadline):
            return None


def _wait(delay, should_stop, deadline):
    """Sleep `delay` seconds; False (at once) if should_stop() turns true or the
    deadline comes first."""
    if deadline is not None:
        delay = min(delay, deadline - time.monotonic())
        if delay <= 0:
            return False
    end = time.monotonic() + delay
    while time.monotonic() < end:
        if should_stop():
            return False
        time.sleep(min(0.2, end - time.monotonic()))
    return True
