"""Inserting many rows at once, without a model instance per row.

A job of 100,000 items made with bulk_create() spent ~7 s building and preparing model
instances (~70 µs a row, most of it Django's per-field preparation) against well under a
second for the INSERT statements themselves. insert_rows() sends the same multi-row
INSERTs from plain tuples; on PostgreSQL it uses COPY, because psycopg parses a statement
of thousands of placeholders in Python every time (~50 ms for 500 rows), while COPY
streams the rows (docs/performance.md has the figures).
"""

from itertools import islice

from django.db import connections, router

#: Rows per INSERT statement at most (fewer where the database limits a statement's
#: parameters: SQLite's 999 in Django's reckoning).
ROWS_PER_STATEMENT = 500


def insert_rows(model, field_names, rows, using=None):
    """INSERT `rows` into model's table and return how many there were.

    Each row is a tuple of values for `field_names` (model field names; a foreign key by
    its name, given the related row's primary key), ready for the database as they are:
    str, int, None. Every other column of the model (but its automatic primary key) gets
    its field's default, prepared once and the same for every row: fields whose default
    must differ per row, and auto_now fields, must be in `field_names`. `rows` may be any
    iterable: only one statement's rows are held at a time. Call it inside the
    transaction that makes the rows' parent, so that they all appear at once or not at
    all.
    """
    using = using or router.db_for_write(model)
    connection = connections[using]
    given = [model._meta.get_field(name) for name in field_names]
    defaulted = [
        field
        for field in model._meta.concrete_fields
        if field not in given and not field.primary_key and not field.generated
    ]
    constants = [field.get_db_prep_save(field.get_default(), connection) for field in defaulted]
    fields = given + defaulted
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    columns = ", ".join(quote(field.column) for field in fields)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql" and hasattr(cursor.cursor, "copy"):  # psycopg 3
            return _copy(connection, cursor, table, columns, rows, constants)
        return _insert_statements(connection, cursor, table, columns, fields, rows, constants)


def _copy(connection, cursor, table, columns, rows, constants):
    """PostgreSQL's COPY ... FROM STDIN, fed row by row (psycopg sends it in blocks)."""
    count = 0
    with connection.wrap_database_errors:
        with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row((*row, *constants))
                count += 1
    return count


def _insert_statements(connection, cursor, table, columns, fields, rows, constants):
    """Multi-row INSERT statements, one statement's rows at a time."""
    rows = iter(rows)
    per_statement = min(
        ROWS_PER_STATEMENT, connection.ops.bulk_batch_size(fields, range(ROWS_PER_STATEMENT))
    )
    # Quoted names of the model's own table and columns; the values are parameters.
    head = f"INSERT INTO {table} ({columns}) VALUES "  # noqa: S608
    row_sql = "({})".format(", ".join(["%s"] * len(fields)))
    statements = {}
    count = 0
    while chunk := list(islice(rows, per_statement)):
        params = []
        for row in chunk:
            params.extend(row)
            params.extend(constants)
        statement = statements.get(len(chunk))
        if statement is None:
            statement = statements[len(chunk)] = head + ", ".join([row_sql] * len(chunk))
        cursor.execute(statement, params)
        count += len(chunk)
    return count
