"""Benchmark: the /background-jobs JSON poll (and the pages around it) with 100,000 jobs.

Run: .venv/bin/python -m bench.bench_dashboard [jobs] [repeats]

Builds a throwaway SQLite database under var/ (or uses DATABASE_URL if set, which must
point at a database that may be filled), with one company holding `jobs` email jobs
(default 100,000) in mixed states and one job of 100,000 items, then times through
Django's test client (full middleware stack, no network):
  - the JSON poll: first request (200), unchanged (304 via If-None-Match), an old page;
  - the HTML dashboard; the big job's detail page, its CSV export (streamed to the
    end) and its admin change page; the admin job changelist.
Prints median and p95 milliseconds and the query count per request. Not a test.
"""

import os
import secrets
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def setup_django():
    if "DATABASE_URL" not in os.environ:
        db = ROOT / "var" / "bench-dashboard.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        os.environ["DATABASE_URL"] = f"sqlite:///{db}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    # A throwaway key: production settings refuse to start without one, and nothing a
    # benchmark signs outlives it.
    os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def fill(job_count, big_items):
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from bulkjobs.models import Status
    from cards.models import BusinessCard, Company, Membership
    from emails.models import BulkEmailJob, BulkEmailJobItem

    company = Company.objects.create(name="Bench", slug="bench")
    user = get_user_model().objects.create_superuser("bench", "bench@example.com", "pw")
    Membership.objects.create(user=user, company=company, role=Membership.Role.ADMIN)
    card = BusinessCard.objects.create(
        company=company, full_name="Bench Card", email="b@example.com"
    )
    now = timezone.now()
    # Finished jobs in the proportions of a busy account; only the newest ten still wait.
    statuses = [Status.COMPLETED] * 8 + [Status.FAILED, Status.CANCELLED]
    jobs = (
        BulkEmailJob(
            company=company,
            created_by=user,
            subject=f"Job {n}",
            status=statuses[n % len(statuses)] if n < job_count - 10 else Status.PENDING,
            total_items=10,
            succeeded_items=10 if n % 10 < 8 else 4,
            failed_items=0 if n % 10 < 8 else 6,
            created_at=now - timedelta(minutes=job_count - n),
            finished_at=now - timedelta(minutes=job_count - n - 1),
        )
        for n in range(job_count)
    )
    BulkEmailJob.objects.bulk_create(jobs, batch_size=5000)
    big = BulkEmailJob.objects.create(
        company=company,
        created_by=user,
        subject="Big",
        status=Status.PROCESSING,
        total_items=big_items,
        succeeded_items=big_items // 3,
        started_at=now - timedelta(minutes=10),
        last_processed_at=now,
    )
    items = (
        BulkEmailJobItem(
            job=big,
            card=card,
            recipient_email=f"r{n}@example.com",
            status=Status.COMPLETED if n < big_items // 3 else Status.PENDING,
        )
        for n in range(big_items)
    )
    BulkEmailJobItem.objects.bulk_create(items, batch_size=5000)
    return user, big


def timed(client, path, repeats, **headers):
    from django.db import connection, reset_queries
    from django.test.utils import CaptureQueriesContext

    times, status, queries = [], None, 0
    for _ in range(repeats):
        reset_queries()
        with CaptureQueriesContext(connection) as captured:
            start = time.perf_counter()
            response = client.get(path, headers=headers)
            if response.streaming:
                b"".join(response.streaming_content)
            times.append((time.perf_counter() - start) * 1000)
        status, queries = response.status_code, len(captured.captured_queries)
    times.sort()
    p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
    return response, status, statistics.median(times), p95, queries


def main(job_count=100_000, repeats=20):
    setup_django()
    from django.db import connection
    from django.test import Client
    from django.urls import reverse

    started = time.perf_counter()
    user, big = fill(job_count, 100_000)
    print(
        f"{connection.vendor}: {job_count:,} jobs + one job of 100,000 items created in "
        f"{time.perf_counter() - started:.1f} s; {repeats} requests each"
    )
    client = Client()
    client.force_login(user)
    json_url = reverse("bulkjobs:jobs_json")
    first, *_ = timed(client, json_url, 1)
    etag = first["ETag"]
    cases = [
        ("JSON poll, changed (200)", json_url, {}),
        ("JSON poll, unchanged (304)", json_url, {"if-none-match": etag}),
        ("JSON poll, page 2,000", json_url + "?email-page=2000", {}),
        ("HTML dashboard", reverse("bulkjobs:dashboard"), {}),
        ("job detail, 100,000 items", reverse("bulkjobs:job_detail", args=["email", big.pk]), {}),
        (
            "CSV export, 100,000 items",
            reverse("bulkjobs:job_items_csv", args=["email", big.pk]),
            {},
        ),
        (
            "admin job page, 100,000 items",
            reverse("admin:emails_bulkemailjob_change", args=[big.pk]),
            {},
        ),
        ("admin job changelist", reverse("admin:emails_bulkemailjob_changelist"), {}),
    ]
    print(f"{'request':34} {'status':>6} {'median ms':>10} {'p95 ms':>8} {'queries':>8}")
    for label, path, headers in cases:
        _response, status, median, p95, queries = timed(client, path, repeats, **headers)
        print(f"{label:34} {status:>6} {median:>10.1f} {p95:>8.1f} {queries:>8}")


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    main(*args)
