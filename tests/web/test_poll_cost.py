"""The dashboard's JSON poll costs the same however much history there is: a fixed
number of queries, none of which counts or scans the company's jobs or items."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from bulkjobs.activity import record_batch_activity
from bulkjobs.models import Status
from emails.models import BulkEmailJob
from tests.conftest import make_email_job

pytestmark = pytest.mark.django_db

JSON = reverse("bulkjobs:jobs_json")


def test_polls_read_no_job_count_and_no_items(
    admin_client_, company, django_assert_max_num_queries
):
    admin_client_.get(JSON)  # the company's first poll counts its jobs once
    jobs = [make_email_job(company, 3, subject=f"Job {n}") for n in range(25)]
    BulkEmailJob.objects.filter(pk__in=[j.pk for j in jobs[:20]]).update(status=Status.COMPLETED)
    BulkEmailJob.objects.filter(pk=jobs[-1].pk).update(status=Status.PROCESSING)
    record_batch_activity(
        company.pk, "email", jobs[0].created_at, processed=3, failed=0, attempts=3, busy_seconds=1
    )
    # session, user, membership, runs, job counts, the active aggregate; one page per
    # kind; for the running job's time left: the activity rows and companies with work.
    with CaptureQueriesContext(connection) as changed, django_assert_max_num_queries(11):
        response = admin_client_.get(JSON)
    with CaptureQueriesContext(connection) as unchanged, django_assert_max_num_queries(6):
        assert (
            admin_client_.get(JSON, headers={"if-none-match": response["ETag"]}).status_code == 304
        )
    for captured in (changed, unchanged):
        sqls = [q["sql"] for q in captured.captured_queries]
        # Counting is only ever over active jobs (the companies with work), never over
        # the company's whole history.
        counts = [sql for sql in sqls if "COUNT(*)" in sql and "bulk_email_jobs" in sql]
        assert all("IN ('pending', 'processing')" in sql for sql in counts), counts
        assert not any("bulk_email_job_items" in sql for sql in sqls)
