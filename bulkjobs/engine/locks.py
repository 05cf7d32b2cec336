"""Lock and statement timeouts for the engine's database sessions, and who holds a lock the
engine waited for.

A transaction left open on a job's or an item's row (a forgotten BEGIN in psql, a hung
script) holds every statement that needs that row for as long as it lasts, and a run
waits for all its threads: one locked job used to freeze a worker, and with it every
company it serves. So every connection the engine works on has a lock timeout
(LOCK_TIMEOUT_SECONDS, 5) and a statement timeout (STATEMENT_TIMEOUT_SECONDS, 60), set
once per connection (apply_session_timeouts). A statement that runs into either fails
(is_timeout()); the engine then passes the company over for this run with one log line
naming the transaction in the way (describe_blockers()), and writes what it knew once
the row is free (bulkjobs.engine.run.Run.settle_leftovers).

SQLite has no row locks: a writer waits for the file's write lock for SQLITE_BUSY_TIMEOUT
(config/settings.py) and then fails with "database is locked", which counts as a lock
timeout too.
"""

import logging
import math

from django.db import DatabaseError, OperationalError, connection

from .. import conf

log = logging.getLogger("bulkjobs.locks")

#: PostgreSQL SQLSTATEs: lock_not_available (lock_timeout, NOWAIT) and query_canceled
#: (statement_timeout, or a pg_cancel_backend()).
POSTGRESQL_LOCK_TIMEOUT = "55P03"
POSTGRESQL_STATEMENT_TIMEOUT = "57014"
#: MariaDB/MySQL error codes: 1205 ER_LOCK_WAIT_TIMEOUT; 1969 MariaDB's
#: ER_STATEMENT_TIMEOUT (max_statement_time), 3024 MySQL's max_execution_time.
MYSQL_LOCK_TIMEOUT = 1205
MYSQL_STATEMENT_TIMEOUTS = (1969, 3024)
#: How many blocking transactions a log line names at most.
BLOCKERS_NAMED = 3

#: Attribute of a Django connection: the driver connection the timeouts were set on (a
#: reconnect makes a new one, which needs them again).
_APPLIED = "_bulkjobs_session_timeouts"


def apply_session_timeouts():
    """Give this thread's database connection the engine's lock and statement timeouts,
    opening it if need be. One statement the first time for each connection, none after."""
    connection.ensure_connection()
    raw = connection.connection
    if getattr(connection, _APPLIED, None) is raw:
        return
    lock = conf.get("LOCK_TIMEOUT_SECONDS")
    statement = conf.get("STATEMENT_TIMEOUT_SECONDS")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('lock_timeout', %s, false), "
                "set_config('statement_timeout', %s, false)",
                [f"{max(1, round(lock * 1000))}ms", f"{max(1, round(statement * 1000))}ms"],
            )
    elif connection.vendor == "mysql":
        # InnoDB's lock wait is whole seconds (at least 1).
        lock_seconds = max(1, math.ceil(lock))
        with connection.cursor() as cursor:
            if connection.mysql_is_mariadb:
                cursor.execute(
                    "SET SESSION innodb_lock_wait_timeout = %s, max_statement_time = %s",
                    [lock_seconds, statement],
                )
            else:
                # MySQL's max_execution_time covers SELECTs only (milliseconds).
                cursor.execute(
                    "SET SESSION innodb_lock_wait_timeout = %s, max_execution_time = %s",
                    [lock_seconds, max(1, round(statement * 1000))],
                )
    setattr(connection, _APPLIED, raw)


def is_lock_timeout(exc):
    """True if exc (or an error behind it) is a statement that waited for a lock longer
    than the lock timeout allows (SQLite: "database is locked")."""
    return _timeout_kind(exc) == "lock"


def is_timeout(exc):
    """True if exc (or an error behind it) is a lock timeout or a statement cancelled by
    the statement timeout: the row or the query, not the connection, is the trouble."""
    return _timeout_kind(exc) is not None


def _timeout_kind(exc):
    """ "lock", "statement" or None, for exc and the errors behind it."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        sqlstate = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
        if sqlstate == POSTGRESQL_LOCK_TIMEOUT:
            return "lock"
        if sqlstate == POSTGRESQL_STATEMENT_TIMEOUT:
            return "statement"
        args = getattr(exc, "args", ())
        code = args[0] if args and isinstance(args[0], int) else None
        if code == MYSQL_LOCK_TIMEOUT:
            return "lock"
        if code in MYSQL_STATEMENT_TIMEOUTS:
            return "statement"
        if isinstance(
            exc, OperationalError | _sqlite_operational_error()
        ) and "database is locked" in str(exc):
            return "lock"
        exc = exc.__cause__ or exc.__context__
    return None


def _sqlite_operational_error():
    import sqlite3

    return sqlite3.OperationalError


def describe(exc):
    """What ran out, for a log line: "lock wait over 5 s" or "statement over 60 s"."""
    if is_lock_timeout(exc):
        if connection.vendor == "sqlite":
            return "the SQLite file stayed locked by another connection"
        return f"lock wait over {conf.get('LOCK_TIMEOUT_SECONDS'):g} s"
    return f"statement over {conf.get('STATEMENT_TIMEOUT_SECONDS'):g} s"


def describe_blockers(tables):
    """Name the transactions that have held locks on `tables` (table names) for at least
    the lock timeout: "PostgreSQL backend pid 4242 (idle in transaction for 73 s, user
    app, application psql)", several joined by "; ". With the hint an operator needs to
    end one. Never raises: a database that will not say (no privilege) gets a generic
    answer."""
    return _describe(_find_blockers(tables))


def _find_blockers(tables):
    """[(pid or thread id, description)] of the blocking transactions; [] if unknown."""
    try:
        return _blockers(tables)
    except DatabaseError as exc:
        log.debug("Could not list the blocking transactions: %s", exc)
        return []


def _describe(blockers):
    if connection.vendor == "sqlite":
        return "another connection holds the SQLite file's write lock"
    if not blockers:
        return "a transaction the database did not name"
    names = "; ".join(description for _pid, description in blockers)
    if connection.vendor == "postgresql":
        return f"{names}; end it with SELECT pg_terminate_backend(pid) if it is stuck"
    return f"{names}; end it with KILL <thread id> if it is stuck"


def _blockers(tables):
    """Descriptions of the transactions older than the lock timeout that hold locks on
    the tables (PostgreSQL), or on any InnoDB rows (MariaDB/MySQL), oldest first."""
    older_than = conf.get("LOCK_TIMEOUT_SECONDS")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # A row lock (SELECT ... FOR UPDATE, an UPDATE) holds a lock on its table
            # until the transaction ends: the blocker is among those holding one.
            cursor.execute(
                "SELECT a.pid, a.state, "
                "EXTRACT(EPOCH FROM statement_timestamp() - a.xact_start)::int, "
                "a.usename, a.application_name "
                "FROM pg_stat_activity a "
                "WHERE a.pid <> pg_backend_pid() "
                "AND a.xact_start <= statement_timestamp() - make_interval(secs => %s) "
                "AND EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.granted "
                "AND l.relation = ANY(%s::regclass[])) "
                "ORDER BY a.xact_start LIMIT %s",
                [older_than, list(tables), BLOCKERS_NAMED],
            )
            return [
                (
                    pid,
                    f"PostgreSQL backend pid {pid} ({state or 'state hidden'} for {age} s"
                    + (f", user {user}" if user else "")
                    + (f", application {application}" if application else "")
                    + ")",
                )
                for pid, state, age, user, application in cursor.fetchall()
            ]
    if connection.vendor == "mysql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT t.trx_mysql_thread_id, p.COMMAND, "
                "TIMESTAMPDIFF(SECOND, t.trx_started, NOW()), p.USER, p.HOST, "
                "t.trx_rows_locked "
                "FROM information_schema.INNODB_TRX t "
                "LEFT JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id "
                "WHERE t.trx_mysql_thread_id <> CONNECTION_ID() "
                "AND t.trx_started <= NOW() - INTERVAL %s SECOND "
                "AND (t.trx_rows_locked > 0 OR t.trx_tables_locked > 0) "
                "ORDER BY t.trx_started LIMIT %s",
                [math.floor(older_than), BLOCKERS_NAMED],
            )
            # A session between statements is "Sleep" in the processlist.
            states = {"Sleep": "idle", None: "state hidden"}
            return [
                (
                    thread,
                    f"MariaDB thread id {thread} ({states.get(command, command)} in a "
                    f"transaction for {age} s, {rows} row(s) locked"
                    # Not user@host: the log redaction would take it for an email address.
                    + (f", user {user} from {host}" if user else "")
                    + ")",
                )
                for thread, command, age, user, host, rows in cursor.fetchall()
            ]
    return []


class Reported:
    """Which locked jobs a process has reported, by the pids in the way: a job whose
    blockers stay gets one WARNING, not one per run (the later ones go to DEBUG)."""

    def __init__(self):
        self._said = {}

    def first_time(self, key, blockers):
        """True if this is news: the key was not reported, or with other blockers."""
        news = self._said.get(key) != blockers
        self._said[key] = blockers
        return news

    def forget(self, key):
        self._said.pop(key, None)


#: The locked jobs this process has reported (see report_locked).
reported = Reported()


def report_locked(kind, job_pk, exc, what):
    """Log that a statement for job `job_pk` ran into a timeout: which one, what the engine
    does about it (`what`), and the transactions in the way. A WARNING the first time for
    these blockers, DEBUG while they stay."""
    tables = [kind.job_model._meta.db_table, kind.item_model._meta.db_table]
    found = _find_blockers(tables) if is_lock_timeout(exc) else []
    # The same transactions in the way again: said once.
    pids = tuple(pid for pid, _description in found)
    level = logging.WARNING if reported.first_time((kind.name, job_pk), pids) else logging.DEBUG
    if is_lock_timeout(exc):
        blockers = _describe(found)
        kind.logger.log(
            level,
            "Job %s: locked by another transaction (%s); %s. In the way: %s",
            job_pk,
            describe(exc),
            what,
            blockers,
        )
    else:
        kind.logger.log(level, "Job %s: %s; %s", job_pk, describe(exc), what)


class skip_if_locked:  # noqa: N801 (used as a statement, like contextlib's suppress)
    """A block for one job that a lock or statement timeout may cut short: the timeout is
    reported (report_locked, saying `what` happens instead) and swallowed, so a locked
    job costs the others nothing but the wait. `skipped` says whether it was cut short."""

    def __init__(self, kind, job_pk, what):
        self.kind, self.job_pk, self.what = kind, job_pk, what
        self.skipped = False

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        if not isinstance(exc, DatabaseError) or not is_timeout(exc):
            return False
        report_locked(self.kind, self.job_pk, exc, self.what)
        self.skipped = True
        return True
