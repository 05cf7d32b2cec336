"""The hourly totals a batch writes: its items processed and failed, attempts and busy
seconds, added to its company's ActivityHour row for the current hour.

One upsert per batch (record_batch_activity), the same statement on every database, so
the pages that read these rows (bulkjobs.web.charts, and the measured time per item
behind bulkjobs.web.eta) cost the same however many jobs and items there are.
"""

from django.db import connection as default_connection
from django.db import connections

from ..models import ActivityHour


def hour_start(moment):
    """The hour `moment` falls in: the `hour` of its ActivityHour row."""
    return moment.replace(minute=0, second=0, microsecond=0)


def _upsert_sql(vendor, table):
    """INSERT one hour's row or add to it: one statement on every database."""
    columns = ("company_id", "kind", "hour", "processed", "failed", "attempts", "busy_seconds")
    added = columns[3:]
    quote = "`" if vendor == "mysql" else '"'
    q = [f"{quote}{c}{quote}" for c in columns]
    insert = (
        f"INSERT INTO {quote}{table}{quote} ({', '.join(q)}) "  # noqa: S608 - names are fixed
        f"VALUES ({', '.join(['%s'] * len(columns))})"
    )
    if vendor == "mysql":
        sets = ", ".join(
            f"{quote}{c}{quote} = {quote}{c}{quote} + VALUES({quote}{c}{quote})" for c in added
        )
        return f"{insert} ON DUPLICATE KEY UPDATE {sets}"
    sets = ", ".join(
        f"{quote}{c}{quote} = {quote}{table}{quote}.{quote}{c}{quote} + excluded.{quote}{c}{quote}"
        for c in added
    )
    return f"{insert} ON CONFLICT ({', '.join(q[:3])}) DO UPDATE SET {sets}"


def record_batch_activity(
    company_id, kind_name, now, *, processed, failed, attempts, busy_seconds, using=None
):
    """Add one batch's outcomes to its company's row for the current hour (one query)."""
    connection = connections[using] if using else default_connection
    hour_field = ActivityHour._meta.get_field("hour")
    sql = _upsert_sql(connection.vendor, ActivityHour._meta.db_table)
    params = [
        company_id,
        kind_name,
        hour_field.get_db_prep_save(hour_start(now), connection),
        processed,
        failed,
        attempts,
        busy_seconds,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
