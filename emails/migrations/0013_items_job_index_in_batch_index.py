"""The items' job column loses its own index: the batch index (job, status, id) starts
with it and serves every lookup by job, and a second index cost every write of an item.
Only the index is dropped (bulkjobs.models.sql.drop_single_column_indexes): Django's
AlterField(db_index=False) would also drop and re-add the foreign key, reading the whole
items table again while the engine waits to write."""

import django.db.models.deletion
from django.db import migrations, models

from bulkjobs.models import sql


def drop_index(apps, schema_editor):
    model = apps.get_model("emails", "BulkEmailJobItem")
    sql.drop_single_column_indexes(schema_editor, model, "job")


def add_index(apps, schema_editor):
    model = apps.get_model("emails", "BulkEmailJobItem")
    schema_editor.add_index(model, models.Index(fields=["job"], name="emails_item_job_idx"))


class Migration(migrations.Migration):
    dependencies = [
        ("emails", "0012_consent_message_id_key_platform_wide_suppression"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="bulkemailjobitem",
                    name="job",
                    field=models.ForeignKey(
                        db_column="bulk_email_job_id",
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="items",
                        to="emails.bulkemailjob",
                    ),
                ),
            ],
            # Not atomic: MariaDB cannot roll DDL back, so Django refuses it inside a
            # transaction.
            database_operations=[migrations.RunPython(drop_index, add_index, atomic=False)],
        ),
    ]
