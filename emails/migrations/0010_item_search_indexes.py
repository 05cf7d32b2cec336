"""Indexes for the job page's search: (job, recipient address) and (job, recipient name),
folded to lower case where the database can index an expression; the SQL differs per
database (bulkjobs.models.sql.prefix_index_sql), so it is not a Meta index."""

from django.db import migrations

from bulkjobs.models import sql

INDEXES = {
    "bulk_email_item_search_email_idx": "recipient_email",
    "bulk_email_item_search_name_idx": "recipient_name",
}


def create(apps, schema_editor):
    model = apps.get_model("emails", "BulkEmailJobItem")
    for name, field_name in INDEXES.items():
        schema_editor.execute(
            sql.prefix_index_sql(schema_editor.connection, model, field_name, name)
        )


def drop(apps, schema_editor):
    model = apps.get_model("emails", "BulkEmailJobItem")
    for name in INDEXES:
        schema_editor.execute(sql.drop_index_sql(schema_editor.connection, model, name))


class Migration(migrations.Migration):
    dependencies = [
        ("emails", "0009_item_bounces"),
    ]

    operations = [
        # Not atomic: MariaDB cannot roll DDL back, so Django refuses it inside a transaction.
        migrations.RunPython(create, drop, atomic=False),
    ]
