"""The SQL that differs between databases, one function per vendor.

The engine's per-item writes are plain SQL: building the equivalent ORM query per item
cost ~2 ms, more than an email's send, and the ORM cannot say some of them at all
(append to a JSON array, write two rows under different conditions and learn which
matched). Where PostgreSQL, MariaDB/MySQL and SQLite need different text, each has its
own function below, picked by connection.vendor; what they share is built once per
model and set of columns and cached.

Identifiers come from model metadata through the connection's quote_name; values are
always parameters.
"""

import functools
from datetime import UTC, datetime

from django.db import connections
from django.db.models import Q
from django.db.models.functions import Lower
from django.db.models.lookups import GreaterThanOrEqual, LessThan, StartsWith

from .jobs import ATTEMPT_LOG_SIZE, ATTEMPT_REASON_LENGTH

# --- one attempt_log entry more, dropping the second-oldest beyond ATTEMPT_LOG_SIZE ------


def _attempt_log_append_postgresql(log, n, size):
    return (
        f"(CASE WHEN jsonb_array_length({log}) >= {size} THEN {log} - 1 ELSE {log} END)"
        f" || jsonb_build_array(jsonb_build_object('n', {n}, 'at', %s::text,"
        " 'status', %s::text, 'reason', %s::text))"
    )


def _attempt_log_append_mysql(log, n, size):
    return (
        f"JSON_ARRAY_APPEND(IF(JSON_LENGTH({log}) >= {size}, JSON_REMOVE({log}, '$[1]'),"
        f" {log}), '$', JSON_OBJECT('n', {n}, 'at', %s, 'status', %s, 'reason', %s))"
    )


def _attempt_log_append_sqlite(log, n, size):
    return (
        f"json_insert(CASE WHEN json_array_length({log}) >= {size}"
        f" THEN json_remove({log}, '$[1]') ELSE {log} END, '$[#]',"
        f" json_object('n', {n}, 'at', %s, 'status', %s, 'reason', %s))"
    )


_ATTEMPT_LOG_APPEND = {
    "postgresql": _attempt_log_append_postgresql,
    "mysql": _attempt_log_append_mysql,
    "sqlite": _attempt_log_append_sqlite,
}


@functools.cache
def attempt_log_sql(vendor):
    """SQL for `attempt_log` with one more entry {"n": attempts, "at", "status", "reason"}
    (three parameters, attempt_entry()), dropping the second-oldest entry once the log
    holds ATTEMPT_LOG_SIZE: the first attempt's error is what a person asks about, the
    latest ones say where things stand. `n` is the row's `attempts`, the attempt's
    number. One expression, so the outcome and its log entry are written by one UPDATE;
    no read-modify-write of the log is needed."""
    quote = "`" if vendor == "mysql" else '"'
    log, n = f"{quote}attempt_log{quote}", f"{quote}attempts{quote}"
    return _ATTEMPT_LOG_APPEND[vendor](log, n, ATTEMPT_LOG_SIZE)


def attempt_entry(status, reason, now):
    """The parameters of one attempt_log entry: when, the status it left, the reason."""
    return [now.isoformat(), str(status), (reason or "")[:ATTEMPT_REASON_LENGTH]]


# --- writing two rows in one statement and learning which matched ----------------------


def _can_return_from_update_postgresql(connection):
    return True


def _can_return_from_update_mysql(connection):
    return False  # neither MariaDB nor MySQL has UPDATE ... RETURNING


def _can_return_from_update_sqlite(connection):
    # SQLite 3.35 brought RETURNING to UPDATE and INSERT alike.
    return connection.features.can_return_columns_from_insert


_CAN_RETURN_FROM_UPDATE = {
    "postgresql": _can_return_from_update_postgresql,
    "mysql": _can_return_from_update_mysql,
    "sqlite": _can_return_from_update_sqlite,
}


def can_return_from_update(connection):
    """Whether UPDATE ... RETURNING works on this connection."""
    return _CAN_RETURN_FROM_UPDATE[connection.vendor](connection)


# --- the fenced item writes (the same text on every database) -------------------------


@functools.lru_cache(maxsize=64)
def fenced_update_sql(item_model, alias, columns, with_attempts, with_entry=False):
    """The SQL of ItemQuerySet._fenced_update for one set of columns (built once, reused):
    SET the columns (and attempts + %s, and an attempt_log entry), WHERE the item has the
    expected status (parameters: its id, the status) and the claim fence holds."""
    item_meta = item_model._meta
    connection = connections[alias]
    qn = connection.ops.quote_name
    sets = [f"{qn(column)} = %s" for column in columns]
    if with_attempts:
        sets.append(f"{qn('attempts')} = {qn('attempts')} + %s")
    if with_entry:
        sets.append(f"{qn('attempt_log')} = {attempt_log_sql(connection.vendor)}")
    return (
        f"UPDATE {qn(item_meta.db_table)} SET {', '.join(sets)} "  # noqa: S608
        f"WHERE {qn(item_meta.pk.column)} = %s AND {qn('status')} = %s "
        f"AND {_fence_sql(item_model, qn)}"
    )


@functools.lru_cache(maxsize=64)
def record_and_mark_sql(item_model, alias, columns):
    """The SQL of ItemQuerySet.record_and_mark for one set of outcome columns, where
    can_return_from_update(): each SET is a CASE on the primary key, so the recorded row
    gets its outcome and the marked row becomes `processing` with one more attempt;
    RETURNING says which rows matched."""
    item_meta = item_model._meta
    connection = connections[alias]
    qn = connection.ops.quote_name
    pk = qn(item_meta.pk.column)
    sets = []
    for column in columns:
        # The marked row becomes `processing`; its other columns are left as they are.
        otherwise = "%s" if column == "status" else qn(column)
        sets.append(f"{qn(column)} = CASE WHEN {pk} = %s THEN %s ELSE {otherwise} END")
    attempts, log = qn("attempts"), qn("attempt_log")
    sets.append(f"{attempts} = CASE WHEN {pk} = %s THEN {attempts} + 1 ELSE {attempts} END")
    entry = attempt_log_sql(connection.vendor)
    sets.append(f"{log} = CASE WHEN {pk} = %s THEN {entry} ELSE {log} END")
    # Each row has its own fence: the recorded item's outcome is written while the job
    # is paused by a person too, the next item is marked only while it is running.
    fence = _fence_sql(item_model, qn)
    return (
        f"UPDATE {qn(item_meta.db_table)} SET {', '.join(sets)} "  # noqa: S608
        f"WHERE ({pk} = %s AND {qn('status')} = %s AND {fence}) "
        f"OR ({pk} = %s AND {qn('status')} = %s AND {fence}) RETURNING {pk}"
    )


@functools.lru_cache(maxsize=64)
def record_and_mark_many_sql(item_model, alias, shapes, marks):
    """The SQL of ItemQuerySet.record_and_mark_many, where can_return_from_update(): the
    outcomes of len(shapes) items (shapes[i]: the columns of the i-th outcome) and the
    marks of `marks` items, in one UPDATE. Each outcome column is a CASE on the primary
    key over the recorded rows that set it; `status` makes every other matched row (a
    marked one) `processing`; the marked rows get one more attempt, the recorded ones an
    attempt_log entry. RETURNING says which rows matched.

    Parameters, in order: per outcome column, each setting row's id and value (then, for
    `status`, the marked rows' status); the marked rows' ids (attempts); per recorded
    row its id and attempt entry (attempt_log); the WHERE's recorded ids, their
    expected status and fence, then the marked ids, their expected status and fence."""
    item_meta = item_model._meta
    connection = connections[alias]
    qn = connection.ops.quote_name
    pk = qn(item_meta.pk.column)
    columns = sorted({column for shape in shapes for column in shape})
    if marks and "attempts" in columns:
        # A marked row's attempts go up by one; an outcome setting them (a wait refunds
        # its attempt) is written alone first (Lane._mark).
        raise ValueError("outcomes that set attempts cannot be written with marks")
    if marks and "status" not in columns:
        columns.append("status")
    sets = []
    for column in columns:
        whens = " ".join("WHEN %s THEN %s" for shape in shapes if column in shape)
        otherwise = "%s" if column == "status" and marks else qn(column)
        value = f"CASE {pk} {whens} ELSE {otherwise} END" if whens else otherwise
        sets.append(f"{qn(column)} = {value}")
    attempts, log = qn("attempts"), qn("attempt_log")
    if marks:
        listed = ", ".join(["%s"] * marks)
        sets.append(
            f"{attempts} = CASE WHEN {pk} IN ({listed}) THEN {attempts} + 1 ELSE {attempts} END"
        )
    if shapes:
        entry = attempt_log_sql(connection.vendor)
        whens = " ".join(f"WHEN %s THEN {entry}" for _ in shapes)
        sets.append(f"{log} = CASE {pk} {whens} ELSE {log} END")
    fence = _fence_sql(item_model, qn)
    conditions = [
        f"({pk} IN ({', '.join(['%s'] * count)}) AND {qn('status')} = %s AND {fence})"
        for count in (len(shapes), marks)
        if count
    ]
    statement = (
        f"UPDATE {qn(item_meta.db_table)} SET {', '.join(sets)} "  # noqa: S608
        f"WHERE {' OR '.join(conditions)} RETURNING {pk}"
    )
    return statement, tuple(columns)


@functools.lru_cache(maxsize=16)
def mark_many_sql(item_model, alias, marks):
    """UPDATE `marks` pending items (their ids, then `pending` and the fence) to
    `processing` with one more attempt, for databases without UPDATE ... RETURNING."""
    item_meta = item_model._meta
    qn = connections[alias].ops.quote_name
    listed = ", ".join(["%s"] * marks)
    return (
        f"UPDATE {qn(item_meta.db_table)} SET {qn('status')} = %s, "  # noqa: S608
        f"{qn('attempts')} = {qn('attempts')} + 1 "
        f"WHERE {qn(item_meta.pk.column)} IN ({listed}) AND {qn('status')} = %s "
        f"AND {_fence_sql(item_model, qn)}"
    )


def _fence_sql(item_model, qn):
    """The claim fence of the fenced item writes: the job (four parameters: its id, the
    token, and two statuses it may have) is held by the token and running (both
    `processing`), or, for writes about an item already handled (its outcome, or giving
    it back), running or paused by a person meanwhile (`processing`, `paused`).

    An uncorrelated EXISTS: databases evaluate it once and then reach the items by their
    primary key. (A `job_id IN (SELECT ...)` fence let PostgreSQL scan all of the job's
    items through the job_id index when its statistics were stale.)"""
    job_meta = item_model._meta.get_field("job").related_model._meta
    return (
        f"EXISTS (SELECT 1 FROM {qn(job_meta.db_table)} "  # noqa: S608
        f"WHERE {qn(job_meta.pk.column)} = %s AND {qn('claim_token')} = %s "
        f"AND {qn('status')} IN (%s, %s))"
    )


# --- the hourly activity upsert -------------------------------------------------------

_ACTIVITY_COLUMNS = (
    "company_id",
    "kind",
    "hour",
    "processed",
    "failed",
    "attempts",
    "busy_seconds",
)
#: The columns an upsert adds to; the first three are the row's key.
_ACTIVITY_ADDED = _ACTIVITY_COLUMNS[3:]


def _activity_upsert_postgresql(qn, table, columns, added):
    sets = ", ".join(f"{qn(c)} = {qn(table)}.{qn(c)} + excluded.{qn(c)}" for c in added)
    return f"ON CONFLICT ({', '.join(qn(c) for c in columns[:3])}) DO UPDATE SET {sets}"


def _activity_upsert_mysql(qn, table, columns, added):
    sets = ", ".join(f"{qn(c)} = {qn(c)} + VALUES({qn(c)})" for c in added)
    return f"ON DUPLICATE KEY UPDATE {sets}"


_ACTIVITY_UPSERT = {
    "postgresql": _activity_upsert_postgresql,
    "mysql": _activity_upsert_mysql,
    # SQLite's upsert has PostgreSQL's syntax.
    "sqlite": _activity_upsert_postgresql,
}


@functools.lru_cache(maxsize=8)
def activity_upsert_sql(alias, table):
    """INSERT one hour's activity row (company_id, kind, hour, processed, failed,
    attempts, busy_seconds: seven parameters) or add its counts to the row already
    there: one statement on every database."""
    connection = connections[alias]
    qn = connection.ops.quote_name
    columns = _ACTIVITY_COLUMNS
    insert = (
        f"INSERT INTO {qn(table)} ({', '.join(qn(c) for c in columns)}) "  # noqa: S608
        f"VALUES ({', '.join(['%s'] * len(columns))})"
    )
    return f"{insert} {_ACTIVITY_UPSERT[connection.vendor](qn, table, columns, _ACTIVITY_ADDED)}"


# --- the database's clock and identity -------------------------------------------------


def _clock_postgresql():
    # clock_timestamp(), not now(): the time of the statement, not of its transaction.
    # The identity is the cluster's system identifier and the timeline of the WAL being
    # written: a promoted standby keeps the first and starts a new timeline. A commit is
    # on the standbys too when there are none, or when some are synchronous and the
    # commit waits for them (synchronous_commit on, remote_write or remote_apply).
    return (
        "SELECT clock_timestamp(), (SELECT system_identifier::text FROM pg_control_system())"
        " || '/' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8),"
        " (SELECT count(*) FROM pg_stat_replication) = 0"
        " OR (current_setting('synchronous_standby_names') <> ''"
        " AND current_setting('synchronous_commit') IN ('on', 'remote_write', 'remote_apply'))"
    )


def _clock_mysql():
    # server_id is unique within a replication set-up; the host name tells two
    # stand-alone servers apart. Whether a commit waits for a replica is not known here.
    return "SELECT UTC_TIMESTAMP(6), CONCAT(@@server_id, '@', @@hostname), NULL"


def _clock_sqlite():
    # One file, one server: no identity to tell apart, nothing replicated.
    return "SELECT strftime('%Y-%m-%d %H:%M:%f', 'now'), '', 1"


_CLOCK = {"postgresql": _clock_postgresql, "mysql": _clock_mysql, "sqlite": _clock_sqlite}


def database_clock(connection):
    """The database server's time now (an aware datetime, UTC), its identity (a text
    that changes when another server answers: a promoted standby, a restored copy), and
    whether a commit is on its standbys too (True, False, or None: unknown)."""
    with connection.cursor() as cursor:
        cursor.execute(_CLOCK[connection.vendor]())
        value, identity, durable = cursor.fetchone()
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value, identity or "", None if durable is None else bool(durable)


# --- prefix search inside one job (the job page's search box) -------------------------
# "kunde12" finds kunde1234@firma.de among a job's 100,000 items through an index on
# (job, the column folded to lower case), never by reading the job's items one by one.
# PostgreSQL: LIKE 'q%' uses a btree only with text_pattern_ops (or the C collation);
# MariaDB/MySQL: LIKE on the column's case-insensitive collation uses a plain index (it
# has no expression indexes); SQLite: its LIKE uses no expression index, a range does
# (binary order puts every string starting with q between q and q + U+10FFFF).

#: The highest code point: every string that starts with q sorts below q + PREFIX_END.
PREFIX_END = "\U0010ffff"


def _prefix_index_postgresql(qn, table, job, column):
    return f"{qn(job)}, lower({qn(column)}) text_pattern_ops"


def _prefix_index_mysql(qn, table, job, column):
    return f"{qn(job)}, {qn(column)}"


def _prefix_index_sqlite(qn, table, job, column):
    return f"{qn(job)}, lower({qn(column)})"


def prefix_index_sql(connection, model, field_name, name):
    """CREATE INDEX `name` serving prefix_condition() on `field_name` of a job's items."""
    qn = connection.ops.quote_name
    table = model._meta.db_table
    job = model._meta.get_field("job").column
    column = model._meta.get_field(field_name).column
    builder = {
        "postgresql": _prefix_index_postgresql,
        "mysql": _prefix_index_mysql,
        "sqlite": _prefix_index_sqlite,
    }[connection.vendor]
    return f"CREATE INDEX {qn(name)} ON {qn(table)} ({builder(qn, table, job, column)})"


def drop_index_sql(connection, model, name):
    qn = connection.ops.quote_name
    if connection.vendor == "mysql":
        return f"DROP INDEX {qn(name)} ON {qn(model._meta.db_table)}"
    return f"DROP INDEX {qn(name)}"


def drop_single_column_indexes(schema_editor, model, field_name):
    """Drop the plain indexes on exactly the field's column (Django's own index of a
    ForeignKey), found by introspection: nothing else (the foreign key constraint stays
    as it is, unlike AlterField(db_index=False), which drops and re-adds it and so reads
    the whole table again). MariaDB/MySQL keep no such index when another one starts
    with the column, so there it usually finds none."""
    connection = schema_editor.connection
    table = model._meta.db_table
    column = model._meta.get_field(field_name).column
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    for name, details in constraints.items():
        if (
            details["index"]
            and not details["unique"]
            and not details["primary_key"]
            and details["columns"] == [column]
        ):
            schema_editor.execute(drop_index_sql(connection, model, name))


def prefix_condition(vendor, path, text):
    """A Q: the field at `path` starts with `text`, case folded, in the form the
    database's prefix index (prefix_index_sql) serves."""
    folded = text.lower()
    if vendor == "mysql":
        return Q(**{f"{path}__istartswith": text})
    if vendor == "sqlite":
        # SQLite's lower() folds ASCII only: a capital umlaut in the data does not
        # match its small one in the query (documented in docs/operations.md).
        return Q(GreaterThanOrEqual(Lower(path), folded)) & Q(
            LessThan(Lower(path), folded + PREFIX_END)
        )
    return Q(StartsWith(Lower(path), folded))
