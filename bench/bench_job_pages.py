"""Benchmark: the job page's JSON poll and the filtered dashboard, with 100,000 jobs.

Run: .venv/bin/python -m bench.bench_job_pages [jobs] [repeats] [other companies]

Uses bench.bench_dashboard's data (one company, `jobs` email jobs in mixed states, one
running job of 100,000 items; `other companies` other tenants with 10 queued jobs each,
default none, then a processor run recorded as the engine records it, since a running
job's time left depends on how many companies share the runs) and its timing helper,
and times through Django's test
client: a job page's poll when the job moved (200) and when it did not (304), the job
page itself with its card holders' names, and the dashboard filtered by status, by
creator and by a date range (first page and a deep page). Prints median and p95
milliseconds and the query count per request. Not a test.
"""

import os
import sys
import time
from datetime import timedelta

from bench.bench_dashboard import OTHER_TENANT_JOBS, fill, fill_other_tenants, setup_django, timed


def main(job_count=100_000, repeats=20, other_companies=0):
    # The test client speaks plain HTTP: no redirect to HTTPS (a 301 has no ETag).
    os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "false")
    setup_django()
    from django.db import connection
    from django.test import Client
    from django.urls import reverse
    from django.utils import timezone

    started = time.perf_counter()
    user, big, _card = fill(job_count, 100_000)
    fill_other_tenants(other_companies)
    print(
        f"{connection.vendor}: {job_count:,} jobs + one job of 100,000 items, "
        f"{other_companies:,} other companies with {other_companies * OTHER_TENANT_JOBS:,} "
        f"queued jobs, created in {time.perf_counter() - started:.1f} s; {repeats} requests each"
    )
    client = Client()
    client.force_login(user)
    job_json = reverse("bulkjobs:job_json", args=["email", big.pk])
    first, *_ = timed(client, job_json, 1)
    dashboard = reverse("bulkjobs:dashboard")
    today = timezone.localdate()
    week = f"created_from={(today - timedelta(days=7)).isoformat()}&created_to={today.isoformat()}"
    cases = [
        ("job poll, changed (200)", job_json, {}),
        ("job poll, unchanged (304)", job_json, {"if-none-match": first["ETag"]}),
        ("job page, 100,000 items", reverse("bulkjobs:job_detail", args=["email", big.pk]), {}),
        ("dashboard, status=failed", dashboard + "?status=failed", {}),
        ("dashboard, failed, page 500", dashboard + "?status=failed&email-page=500", {}),
        ("dashboard, created_by", dashboard + f"?created_by={user.pk}", {}),
        ("dashboard, last 7 days", dashboard + "?" + week, {}),
        ("dashboard, invalid filter (400)", dashboard + "?status=bogus", {}),
    ]
    print(f"{'request':34} {'status':>6} {'median ms':>10} {'p95 ms':>8} {'queries':>8}")
    for label, path, headers in cases:
        _response, status, median, p95, queries = timed(client, path, repeats, **headers)
        print(f"{label:34} {status:>6} {median:>10.1f} {p95:>8.1f} {queries:>8}")


if __name__ == "__main__":
    args = [int(a.replace(",", "").replace("_", "")) for a in sys.argv[1:4]]
    main(*args)
