"""Is the database schema behind this release? For the commands and /healthz.

New code started before `manage.py migrate` finds a table or column it expects missing.
The commands then exit with one line saying what to do, and exit code 3 (SCHEMA_BEHIND),
instead of a traceback (and a crash loop under systemd); /healthz says so.

Knowing costs loading every migration file and one or two queries (Django's migration
loader, the check `manage.py migrate` itself makes). The processing commands, which cron
starts every minute, do not pay it up front: they ask only once a query failed about a
missing table or column (check_after). The other commands ask before they start
(ensure_current); /healthz asks on every request.

The other way round is fine and needs no check: the previous release runs on a schema
that is ahead of it, because every column added since has a database default
(docs/operations.md, "Upgrading").
"""

import logging
from contextlib import contextmanager

from django.core.management.base import CommandError
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

#: The exit code of a command that found the schema behind the code (documented in
#: docs/operations.md, Commands). 1 is any other error, 2 a usage error.
SCHEMA_BEHIND = 3
#: Migrations named in the message; the others are counted.
NAMED = 3

log = logging.getLogger("bulkjobs.schema")

# The errors of a query naming a table or column the database does not have.
_SQLITE_MESSAGES = ("no such table", "no such column", "has no column named")
_POSTGRESQL_CODES = {"42P01", "42703"}  # undefined_table, undefined_column
_MYSQL_CODES = {1054, 1146}  # ER_BAD_FIELD_ERROR, ER_NO_SUCH_TABLE


class SchemaBehind(CommandError):
    """The code expects migrations the database has not had."""

    def __init__(self, unapplied):
        self.unapplied = list(unapplied)
        super().__init__(describe(self.unapplied), returncode=SCHEMA_BEHIND)


def describe(unapplied):
    names = ", ".join(unapplied[:NAMED]) + (", ..." if len(unapplied) > NAMED else "")
    count = len(unapplied)
    return (
        "The database schema is behind this release: run `manage.py migrate` "
        f"({count} unapplied migration{'s' if count != 1 else ''}: {names})."
    )


def unapplied_migrations(using=DEFAULT_DB_ALIAS):
    """The migrations this code has that the database has not had, as "app.name", in
    the order `migrate` would apply them; [] when it is up to date (or ahead)."""
    # Imported here: a processing run that never asks does not pay for the import.
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connections[using])
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return [f"{migration.app_label}.{migration.name}" for migration, _backwards in plan]


def is_missing_schema(exc):
    """True if exc is the database saying a table or column the query named is missing."""
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    args = getattr(cause, "args", ())
    if args and isinstance(args[0], int):  # PyMySQL: (error number, message)
        return args[0] in _MYSQL_CODES
    sqlstate = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    if sqlstate:  # psycopg 3, psycopg2
        return sqlstate in _POSTGRESQL_CODES
    message = str(exc).lower()
    return any(text in message for text in _SQLITE_MESSAGES)


def ensure_current(using=DEFAULT_DB_ALIAS):
    """Raise SchemaBehind if migrations are unapplied."""
    unapplied = unapplied_migrations(using)
    if unapplied:
        raise SchemaBehind(unapplied)


def check_after(exc, using=DEFAULT_DB_ALIAS):
    """Raise SchemaBehind if exc is about a missing table or column and migrations are
    unapplied; otherwise return (the caller re-raises exc). A database that cannot say
    leaves exc as it was."""
    if not is_missing_schema(exc):
        return
    try:
        unapplied = unapplied_migrations(using)
    except DatabaseError:
        return
    if unapplied:
        raise SchemaBehind(unapplied) from None


@contextmanager
def exit_when_behind(logger_name, check_first):
    """For a command's execute(): a schema behind the code becomes one logged line and
    exit code SCHEMA_BEHIND. With `check_first`, the schema is checked before the command
    runs; else only after a query fails about a missing table or column.

    The line is logged, not printed: it reaches the log file, which is all cron keeps,
    and the terminal, through the console handler.
    """
    try:
        if check_first:
            try:
                ensure_current()
            except DatabaseError:
                pass  # unreachable: the command meets that again and says it its way
        try:
            yield
        except DatabaseError as exc:
            check_after(exc)
            raise
    except SchemaBehind as exc:
        logging.getLogger(logger_name).error("%s", exc)
        raise SystemExit(SCHEMA_BEHIND) from None
