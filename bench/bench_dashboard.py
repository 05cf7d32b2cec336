"""Benchmark: the /background-jobs JSON poll (and the pages around it) with 100,000 jobs.

Run: .venv/bin/python -m bench.bench_dashboard [jobs] [repeats] [history items] [other companies]

Builds a throwaway SQLite database under var/ (or uses DATABASE_URL if set, which must
point at a database that may be filled), with one company holding `jobs` email jobs
(default 100,000) in mixed states and one job of 100,000 items, plus `history items`
(default 10,000,000) spread over the finished jobs, written with one set-based
INSERT ... SELECT (a recursive CTE on SQLite, generate_series on PostgreSQL; MariaDB
gets the same through a CTE of 100 rows), a month of hourly activity rows and
`other companies` other tenants with 10 queued jobs each (default none; see
fill_other_tenants: they share the runs, which a running job's time left depends on); then
times through Django's test client (full middleware stack, no network):
  - the JSON poll: first request (200), unchanged (304 via If-None-Match), an old page;
  - the HTML dashboard and the activity page (charts); the big job's detail page, its
    CSV export (streamed to the end) and its admin change page; the admin job changelist.
Prints median and p95 milliseconds and the query count per request. Not a test.
"""

import os
import secrets
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: BENCH_REUSE=1 times the database a previous run filled (filling 10 million items takes
#: minutes) instead of building a fresh one.
REUSE = os.environ.get("BENCH_REUSE") == "1"


def setup_django(db_name="bench-dashboard", reuse=REUSE):
    """Django on DATABASE_URL, or on a throwaway SQLite file var/<db_name>.sqlite3 (kept
    when `reuse`), migrated. Other benchmarks call it too."""
    if "DATABASE_URL" not in os.environ:
        db = ROOT / "var" / f"{db_name}.sqlite3"
        if not reuse:
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

    from django.utils import timezone

    from bulkjobs.models import Status
    from cards.models import Company, Membership
    from emails.models import BulkEmailJob, BulkEmailJobItem
    from tests.conftest import make_cards, make_user

    company = Company.objects.create(name="Bench", slug="bench")
    # A superuser (the admin pages) who is also the company's admin.
    user = make_user("bench", company, Membership.Role.ADMIN, is_staff=True, is_superuser=True)
    card = make_cards(company, 1, prefix="Bench")[0]
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
    return user, big, card


#: Queued jobs each other tenant has (bench_job_pages' `other companies`).
OTHER_TENANT_JOBS = 10


def fill_other_tenants(companies):
    """`companies` other tenants with OTHER_TENANT_JOBS queued email jobs each (no items:
    the pages never read another tenant's items), then one processor run recorded as the
    engine records it, so the pages' "time left" reads what a real run left behind."""
    from django.utils import timezone

    from bulkjobs.engine import RunSummary, note_run_finished
    from bulkjobs.kinds import get_kind
    from bulkjobs.models import ProcessorRun, Status
    from cards.models import Company
    from emails.models import BulkEmailJob

    others = Company.objects.bulk_create(
        Company(name=f"Other {n}", slug=f"other-{n}") for n in range(companies)
    )
    BulkEmailJob.objects.bulk_create(
        (
            BulkEmailJob(company=other, subject="Queued", status=Status.PENDING, total_items=10)
            for other in others
            for _ in range(OTHER_TENANT_JOBS)
        ),
        batch_size=5000,
    )
    ProcessorRun.objects.update_or_create(
        kind="email", defaults={"last_started_at": timezone.now(), "interval_seconds": 60.0}
    )
    note_run_finished(get_kind("email"), RunSummary(kind="email"))


def fill_history(company_id, card_id, big_id, count):
    """`count` finished items spread evenly over the company's finished jobs, in one
    set-based statement (each job gets count / jobs items), then fresh statistics."""
    from django.db import connection

    from bulkjobs.models import Status

    if count <= 0:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*) FROM bulk_email_jobs WHERE company_id = %s AND status IN (%s, %s)",
            [company_id, Status.COMPLETED, Status.FAILED],
        )
        jobs = cursor.fetchone()[0]
        per_job = max(1, count // max(1, jobs))
        if connection.vendor == "postgresql":
            series = f"generate_series(1, {per_job}) AS n(i)"
            prefix = ""
            email = "'h' || j.id || '.' || n.i || '@example.com'"
        elif connection.vendor == "mysql":
            prefix = f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {per_job}) "
            series = "n"
            email = "CONCAT('h', j.id, '.', n.i, '@example.com')"
        else:
            prefix = f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {per_job}) "
            series = "n"
            email = "'h' || j.id || '.' || n.i || '@example.com'"
        sql = (
            "INSERT INTO bulk_email_job_items (bulk_email_job_id, card_id, recipient_email,"
            " recipient_name, status, reason, attempts, attempts_before_retry, attempt_log) "
        )
        select = (
            f"SELECT j.id, %s, {email}, '', CASE WHEN n.i %% 10 = 0 THEN %s ELSE %s END,"
            " '', 1, 0, '[]' FROM bulk_email_jobs j CROSS JOIN " + series + " "
            "WHERE j.company_id = %s AND j.status IN (%s, %s) AND j.id <> %s"
        )
        params = [card_id, Status.FAILED, Status.COMPLETED, company_id]
        params += [Status.COMPLETED, Status.FAILED, big_id]
        # MariaDB takes the CTE after INSERT INTO ...; SQLite and PostgreSQL before it.
        if connection.vendor == "mysql":
            cursor.execute(sql + prefix + select, params)
        else:
            cursor.execute(prefix + sql + select, params)
        if connection.vendor == "postgresql":
            cursor.execute("ANALYZE")
        elif connection.vendor == "sqlite":
            cursor.execute("ANALYZE")


def fill_activity(company):
    """A month of hourly activity for both kinds, as the engine's upserts leave it."""
    from datetime import timedelta

    from django.utils import timezone

    from bulkjobs.engine.activity import hour_start
    from bulkjobs.models import ActivityHour

    now = hour_start(timezone.now())
    ActivityHour.objects.bulk_create(
        ActivityHour(
            company=company,
            kind=kind,
            hour=now - timedelta(hours=n),
            processed=3000,
            failed=n % 7,
            attempts=3000,
            busy_seconds=60,
        )
        for kind in ("email", "wallet")
        for n in range(31 * 24)
    )


def timed(client, path, repeats, **headers):
    from django.db import connection, reset_queries
    from django.test.utils import CaptureQueriesContext

    times, status, queries = [], None, 0
    for _ in range(repeats):
        reset_queries()
        with CaptureQueriesContext(connection) as captured:
            start = time.perf_counter()
            # secure: production settings redirect plain HTTP to HTTPS.
            response = client.get(path, headers=headers, secure=True)
            if response.streaming:
                b"".join(response.streaming_content)
            times.append((time.perf_counter() - start) * 1000)
        status, queries = response.status_code, len(captured.captured_queries)
    times.sort()
    p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
    return response, status, statistics.median(times), p95, queries


def main(job_count=100_000, repeats=20, history_items=10_000_000, other_companies=0):
    setup_django()
    from django.db import connection
    from django.test import Client
    from django.urls import reverse

    started = time.perf_counter()
    from django.contrib.auth import get_user_model

    from cards.models import Company
    from emails.models import BulkEmailJob

    if REUSE and get_user_model().objects.filter(username="bench").exists():
        user = get_user_model().objects.get(username="bench")
        big = BulkEmailJob.objects.get(subject="Big")
        job_count = BulkEmailJob.objects.filter(company_id=big.company_id).count() - 1
        other_companies = Company.objects.exclude(pk=big.company_id).count()
    else:
        user, big, card = fill(job_count, 100_000)
        fill_history(big.company_id, card.pk, big.pk, history_items)
        fill_activity(big.company)
        fill_other_tenants(other_companies)
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM bulk_email_job_items")
        item_count = cursor.fetchone()[0]
    print(
        f"{connection.vendor}: {job_count:,} jobs and {item_count:,} items (one job of "
        f"100,000), {other_companies:,} other companies with queued jobs, created in "
        f"{time.perf_counter() - started:.1f} s; {repeats} requests each"
    )
    client = Client()
    client.force_login(user)
    json_url = reverse("bulkjobs:jobs_json")
    first, *_ = timed(client, json_url, 1)
    etag = first["ETag"]
    # The operators' view of every company (the bench user is staff and a member, so asks
    # for it with ?view=all), its first poll answered once for its ETag.
    overview_url = json_url + "?view=all"
    overview_etag = timed(client, overview_url, 1)[0]["ETag"]
    cases = [
        ("JSON poll, changed (200)", json_url, {}),
        ("JSON poll, unchanged (304)", json_url, {"if-none-match": etag}),
        ("JSON poll, page 2,000", json_url + "?email-page=2000", {}),
        ("HTML dashboard", reverse("bulkjobs:dashboard"), {}),
        ("activity page (charts)", reverse("bulkjobs:activity"), {}),
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
        ("operator view: poll, changed (200)", overview_url, {}),
        ("operator view: poll, 304", overview_url, {"if-none-match": overview_etag}),
        ("operator view: HTML page", reverse("bulkjobs:dashboard") + "?view=all", {}),
    ]
    print(f"{'request':34} {'status':>6} {'median ms':>10} {'p95 ms':>8} {'queries':>8}")
    for label, path, headers in cases:
        _response, status, median, p95, queries = timed(client, path, repeats, **headers)
        print(f"{label:34} {status:>6} {median:>10.1f} {p95:>8.1f} {queries:>8}")


if __name__ == "__main__":
    args = [int(a.replace(",", "").replace("_", "")) for a in sys.argv[1:5]]
    main(*args)
