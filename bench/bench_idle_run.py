"""Benchmark: what an idle processing run costs, with and without the alerts' evaluation.

Run: .venv/bin/python -m bench.bench_idle_run [finished_jobs] [repeats]

Builds a throwaway SQLite database under var/ (or uses DATABASE_URL if set, which must
point at a database that may be filled) holding `finished_jobs` finished email jobs
(default 20,000, one a second back from now; a tenth with failures, already alerted)
and times run_once() for the email kind with nothing to do, alternating
BULKJOBS_ALERTS off and on. Prints the median milliseconds and the query count of each.
Not a test: tests/engine/test_query_counts.py asserts the query bound.
"""

import statistics
import sys
import time

from bench.bench_dashboard import setup_django


def fill(count):
    from datetime import timedelta

    from django.utils import timezone

    from bulkjobs.models import AlertEvent, Status
    from cards.models import Company
    from emails.models import BulkEmailJob

    company = Company.objects.create(name="Bench", slug="bench")
    now = timezone.now()
    jobs = BulkEmailJob.objects.bulk_create(
        [
            BulkEmailJob(
                company=company,
                status=Status.COMPLETED,
                total_items=10,
                succeeded_items=10 - (n % 10 == 0),
                failed_items=int(n % 10 == 0),
                finished_at=now - timedelta(seconds=n),
            )
            for n in range(count)
        ],
        batch_size=2000,
    )
    AlertEvent.objects.bulk_create(
        [
            AlertEvent(
                event=AlertEvent.Event.JOB_FAILURES,
                source="email",
                object_id=job.pk,
                occurred_at=job.finished_at,
                company=company,
                text="bench",
                notified_at=now,
            )
            for job in jobs
            if job.failed_items
        ],
        batch_size=2000,
    )


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    setup_django("bench-idle-run", reuse=False)
    from django.conf import settings
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from bulkjobs.engine import run_once
    from bulkjobs.kinds import get_kind

    fill(count)
    kind = get_kind("email")
    run_once(kind)  # the first run creates the processor record
    timings = {False: [], True: []}
    queries = {}
    for _ in range(repeats):
        for alerts in (False, True):
            settings.BULKJOBS_ALERTS = alerts
            with CaptureQueriesContext(connection) as captured:
                started = time.perf_counter()
                run_once(kind)
                timings[alerts].append((time.perf_counter() - started) * 1000)
            queries[alerts] = len(captured)
    print(f"{connection.vendor}, {count} finished jobs, {repeats} idle runs each:")
    for alerts in (False, True):
        print(
            f"  alerts {'on ' if alerts else 'off'}: median {statistics.median(timings[alerts]):.2f} ms,"
            f" {queries[alerts]} queries"
        )


if __name__ == "__main__":
    main()
