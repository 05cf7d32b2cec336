"""The dashboard's JSON poll costs the same however much history there is: a fixed
number of queries, none of which counts or scans the company's jobs or items."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from bulkjobs.engine.activity import record_batch_activity
from bulkjobs.models import ProcessorRun, Status
from cards.models import Company
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
    # kind; for the running job's time left: the activity rows (the companies with work
    # come with the runs); for what the waiting jobs wait for (bulkjobs.web.queue): the
    # company's active jobs in turn order, its pace bucket, and whether the job between
    # batches has an item due (else when its next retry is).
    with CaptureQueriesContext(connection) as changed, django_assert_max_num_queries(9 + 3):
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
        # Items are only looked at for the one job between batches, by EXISTS (through
        # the items' index), never counted.
        items = [sql for sql in sqls if "bulk_email_job_items" in sql]
        assert all("EXISTS" in sql and "COUNT" not in sql for sql in items), items
        assert len(items) <= (1 if captured is changed else 0)


def test_polls_of_a_running_job_never_count_other_tenants_jobs(
    admin_client_, company, django_assert_max_num_queries
):
    job = make_email_job(company, 3)
    BulkEmailJob.objects.filter(pk=job.pk).update(status=Status.PROCESSING)
    for n in range(5):
        make_email_job(Company.objects.create(name=f"Other {n}", slug=f"other-{n}"), 2)
    # What the processor counted at the end of its last run.
    ProcessorRun.objects.create(
        kind="email", last_started_at=timezone.now(), interval_seconds=60, companies_with_work=6
    )
    admin_client_.get(JSON)  # the company's first poll counts its jobs once
    job_json = reverse("bulkjobs:job_json", args=["email", job.pk])
    # session, user, membership, the job, its company's queue (one aggregate, for the
    # ETag); its item counts and page of items; for the time left: the runs (with the
    # companies with work) and the activity rows; its queue: the company's active jobs
    # in turn order, its pace bucket, whether the job has an item due.
    with CaptureQueriesContext(connection) as job_poll, django_assert_max_num_queries(8 + 4):
        response = admin_client_.get(job_json)
    assert response.status_code == 200
    assert response.json()["job"]["seconds_left"] > 0
    with CaptureQueriesContext(connection) as dashboard_poll, django_assert_max_num_queries(9 + 3):
        response = admin_client_.get(JSON)
    [email] = [k for k in response.json()["kinds"] if k["name"] == "email"]
    assert [row["seconds_left"] > 0 for row in email["jobs"]] == [True]
    for captured in (job_poll, dashboard_poll):
        for sql in (q["sql"].replace('"', "").replace("`", "") for q in captured.captured_queries):
            # Every read of jobs is this company's: none counts other tenants' work.
            if "FROM bulk_email_jobs" in sql or "FROM bulk_wallet_api_jobs" in sql:
                assert f"company_id = {company.pk}" in sql, sql
