"""Benchmark: how long the database defaults' migration holds a big items table.

Run: .venv/bin/python -m bench.bench_migrate_defaults [items]

Fills bulk_email_job_items with `items` rows (default 1,000,000), migrates emails back
to the migration before emails' *_db_defaults_for_added_columns and times applying it
again, which is what `manage.py migrate` does during an upgrade while the previous
release runs. PostgreSQL and MariaDB only change the columns' defaults; SQLite copies
the table, once per column, holding the database's write lock meanwhile (writers wait up
to SQLITE_BUSY_TIMEOUT, 30 s). Uses DATABASE_URL when set (a database it may fill), else
a throwaway SQLite file under var/. Not a test.
"""

import sys
import time

from bench.bench_dashboard import setup_django

SUFFIX = "_db_defaults_for_added_columns"


def main(count=1_000_000):
    setup_django("bench-migrate-defaults", reuse=False)
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.db.migrations.loader import MigrationLoader

    from bulkjobs.models.inserts import insert_rows
    from cards.models import Company
    from emails.models import BulkEmailJob, BulkEmailJobItem

    company = Company.objects.create(name="Bench", slug="bench-migrate")
    started = time.perf_counter()
    with transaction.atomic():
        job = BulkEmailJob.objects.create(company=company, subject="Bench", total_items=count)
        insert_rows(
            BulkEmailJobItem,
            ("job", "recipient_email"),
            ((job.pk, f"r{n}@example.com") for n in range(count)),
        )
    print(f"{connection.vendor}: {count:,} items in {time.perf_counter() - started:.1f} s")
    graph = MigrationLoader(None).graph
    [key] = [key for key in graph.nodes if key[0] == "emails" and key[1].endswith(SUFFIX)]
    migration = key[1]
    [(_app, before)] = [parent for parent in graph.node_map[key].parents if parent[0] == "emails"]
    call_command("migrate", "emails", before, verbosity=0)
    started = time.perf_counter()
    call_command("migrate", "emails", migration, verbosity=0)
    print(f"migrate emails {migration}: {time.perf_counter() - started:.1f} s")
    call_command("migrate", verbosity=0)
    BulkEmailJob.objects.filter(pk=job.pk).delete()
    company.delete()


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:]))
