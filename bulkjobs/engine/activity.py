"""The hourly totals a batch writes: its items processed and failed, attempts and busy
seconds, added to its company's ActivityHour row for the current hour.

One upsert per batch (record_batch_activity; its SQL per database in bulkjobs.models.sql),
so the pages that read these rows (bulkjobs.web.charts, and the measured time per item
behind bulkjobs.web.eta) cost the same however many jobs and items there are.
"""

from django.db import connection as default_connection
from django.db import connections

from ..models import ActivityHour
from ..models.sql import activity_upsert_sql


def hour_start(moment):
    """The hour `moment` falls in: the `hour` of its ActivityHour row."""
    return moment.replace(minute=0, second=0, microsecond=0)


def record_batch_activity(
    company_id, kind_name, now, *, processed, failed, attempts, busy_seconds, using=None
):
    """Add one batch's outcomes to its company's row for the current hour (one query)."""
    connection = connections[using] if using else default_connection
    hour_field = ActivityHour._meta.get_field("hour")
    sql = activity_upsert_sql(connection.alias, ActivityHour._meta.db_table)
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
