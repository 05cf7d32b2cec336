"""Benchmark: the job page's search ("did kunde1234@… get it?") on a job of 100,000 items.

Run: DATABASE_URL=postgres://postgres@127.0.0.1:5432/bizcards_bench_search \\
     .venv/bin/python -m bench.bench_job_search [items] [repeats] [other jobs' items]

Builds one company with a job of `items` emails (default 100,000) to distinct addresses
("kunde<n>@firma<n % 50>.de", with names "Vorname<n> Nachname<n % 997>") of which every
50th failed, plus `other jobs' items` (default 400,000) in other jobs of the company, so
the index has to tell this job's items from the rest. Then times through Django's test
client, the whole page (middleware, session, rendering): searches by a full address, an
address prefix matching 11 items, a prefix matching ~11,000, a name prefix, one that
matches nothing, an item number, and the same with the status filter "failed". Prints
median and p95 milliseconds of the page, its query count, median and p95 of the search's
own two queries (count and rows) alone, and the search query's plan (PostgreSQL:
EXPLAIN) so the index's use is visible. Uses DATABASE_URL (a database that may be
filled) or a throwaway SQLite file under var/; BENCH_REUSE=1 times the data a previous
run left there. Not a test.
"""

import os
import random
import statistics
import sys
import time
from urllib.parse import urlencode

from bench.bench_dashboard import REUSE, setup_django, timed


def fill(items, other_items):
    from django.db import connection

    from bulkjobs.models import Status
    from cards.models import Company, Membership
    from emails.models import BulkEmailJob, BulkEmailJobItem
    from tests.conftest import make_cards, make_user

    company = Company.objects.create(name="Search bench", slug="search-bench")
    user = make_user("search-bench", company, Membership.Role.ADMIN)
    card = make_cards(company, 1, prefix="Bench")[0]

    def make_job(subject, count, start):
        job = BulkEmailJob.objects.create(
            company=company,
            created_by=user,
            subject=subject,
            status=Status.COMPLETED,
            total_items=count,
            succeeded_items=count - count // 50,
            failed_items=count // 50,
        )
        BulkEmailJobItem.objects.bulk_create(
            (
                BulkEmailJobItem(
                    job=job,
                    card=card,
                    recipient_email=f"kunde{n}@firma{n % 50}.de",
                    recipient_name=f"Vorname{n} Nachname{n % 997}",
                    status=Status.FAILED if n % 50 == 0 else Status.COMPLETED,
                    attempts=1,
                )
                for n in range(start, start + count)
            ),
            batch_size=5000,
        )
        return job

    job = make_job("Newsletter", items, 0)
    # Other jobs of the same company to the same kind of addresses.
    for n in range(0, other_items, 100_000):
        make_job(f"Older {n}", min(100_000, other_items - n), 0)
    # What autovacuum would have done by the time anyone searches: statistics, and the
    # visibility map that lets the per-status counts read the index alone.
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")
    return user, job


def plan(job, text):
    """EXPLAIN of the search's first query (the matching ids)."""
    from bulkjobs.kinds import get_kind
    from bulkjobs.web.views import search_condition
    from emails.models import BulkEmailJobItem

    items = BulkEmailJobItem.objects.filter(job_id=job.pk).filter(
        search_condition(get_kind("email"), text)
    )
    return items.order_by().values_list("pk", flat=True)[:1001].explain()


def search_sql(job, params, repeats):
    """Median and p95 ms of the search's own two queries (its count and its page of
    rows), without the rest of the page."""
    from bulkjobs.kinds import get_kind
    from bulkjobs.web.views import _search_page, search_condition
    from emails.models import BulkEmailJobItem

    if not params.get("q"):
        return 0.0, 0.0
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        items = BulkEmailJobItem.objects.filter(job_id=job.pk)
        if params.get("status"):
            items = items.filter(status=params["status"])
        items = items.filter(search_condition(get_kind("email"), params["q"]))
        _search_page(items, 1)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.95))]


def main(items=100_000, repeats=40, other_items=400_000):
    os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "false")
    setup_django("bench-job-search")
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.urls import reverse

    from emails.models import BulkEmailJob, BulkEmailJobItem

    started = time.perf_counter()
    if REUSE and get_user_model().objects.filter(username="search-bench").exists():
        user = get_user_model().objects.get(username="search-bench")
        job = BulkEmailJob.objects.get(subject="Newsletter", company__slug="search-bench")
        items = job.total_items
    else:
        user, job = fill(items, other_items)
    print(
        f"{connection.vendor}: one job of {items:,} emails, {other_items:,} more items in "
        f"other jobs, created in {time.perf_counter() - started:.1f} s; {repeats} requests each"
    )
    client = Client()
    client.force_login(user)
    url = reverse("bulkjobs:job_detail", args=["email", job.pk])
    some = random.Random(24).randrange(items)
    item_pk = (
        BulkEmailJobItem.objects.filter(job=job).order_by("id").values_list("pk", flat=True)[some]
    )
    cases = [
        ("full address", {"q": f"kunde{some}@firma{some % 50}.de"}),
        ("address prefix, 11 matches", {"q": "kunde1234"}),
        ("address prefix, ~11,000 matches", {"q": "kunde5"}),
        ("upper case prefix", {"q": "KUNDE4321"}),
        ("name prefix", {"q": "vorname777"}),
        ("no match", {"q": "nobody@"}),
        ("item number", {"q": f"#{item_pk}"}),
        ("prefix + status failed", {"q": "kunde1", "status": "failed"}),
        ("no search (reference)", {}),
    ]
    print(
        f"{'search':34} {'status':>6} {'median ms':>10} {'p95 ms':>8} {'queries':>8}"
        f" {'search SQL median':>18} {'p95 ms':>7}"
    )
    for label, params in cases:
        path = url + ("?" + urlencode(params) if params else "")
        _response, status, median, p95, queries = timed(client, path, repeats)
        sql_median, sql_p95 = search_sql(job, params, repeats)
        print(
            f"{label:34} {status:>6} {median:>10.1f} {p95:>8.1f} {queries:>8}"
            f" {sql_median:>18.1f} {sql_p95:>7.1f}"
        )
    print("\nplan of the search for 'vorname777':")
    print(plan(job, "vorname777"))


if __name__ == "__main__":
    args = [int(a.replace(",", "").replace("_", "")) for a in sys.argv[1:4]]
    main(*args)
