"""The /background-jobs page and its JSON poll: rows, health line, ETag/304, bounded queries."""

from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from bulkjobs.models import ProcessorRun, Status
from bulkjobs.ops.services import cancel_job, retry_failed_items
from bulkjobs.web.dashboard import JOBS_PER_PAGE
from emails.models import BulkEmailJob, BulkEmailJobItem
from tests.conftest import make_cards, make_email_job

from .conftest import fail_items

JSON = reverse("bulkjobs:jobs_json")
DASHBOARD = reverse("bulkjobs:dashboard")


def email_section(data):
    return next(kind for kind in data["kinds"] if kind["name"] == "email")


def test_json_shape(admin_client_, job, owner):
    response = admin_client_.get(JSON)
    assert response["Content-Type"] == "application/json"
    assert "private" in response["Cache-Control"] and "no-cache" in response["Cache-Control"]
    data = response.json()
    names = [kind["name"] for kind in data["kinds"]]
    assert names[-1] == "email"
    if "wallet" in names:
        assert names[0] == "wallet"
    section = email_section(data)
    assert section["count"] == 1 and section["page"] == 1
    assert set(section["health"]) == {"last_run_at", "overdue", "message"}
    (row,) = section["jobs"]
    assert row["id"] == job.pk
    assert row["status"] == "pending" and row["status_label"] == "Pending"
    assert row["created_by"] == "owner"
    assert (row["total"], row["processed"], row["percent"]) == (3, 0, 0)
    assert (row["succeeded"], row["failed"], row["cancelled"]) == (0, 0, 0)
    assert row["can_cancel"] is True and row["can_retry"] is False
    assert row["urls"]["detail"] == f"/background-jobs/email/{job.pk}/"
    assert row["urls"]["cancel"] == f"/background-jobs/email/{job.pk}/cancel/"
    assert f'<tr data-job="{job.pk}"' in row["html"]
    assert 'role="progressbar"' in row["html"]


def test_rows_show_progress_counts_and_time_left(admin_client_, company, owner):
    cards = make_cards(company, 10)
    job = make_email_job(company, cards=cards, created_by=owner)
    now = timezone.now()
    BulkEmailJob.objects.filter(pk=job.pk).update(
        status=Status.PROCESSING,
        started_at=now - timedelta(minutes=4),
        succeeded_items=3,
        failed_items=1,
        last_processed_at=now,
    )
    row = email_section(admin_client_.get(JSON).json())["jobs"][0]
    assert (row["processed"], row["percent"]) == (4, 40)
    # 6 items left at the company's pace of 50 a minute (bulkjobs.web.eta), however slowly
    # the first 4 went.
    assert row["seconds_left"] == 7
    assert row["time_left"] == "less than a minute"
    page = admin_client_.get(DASHBOARD).content.decode()
    assert 'aria-valuenow="40"' in page
    assert 'aria-valuemin="0"' in page and 'aria-valuemax="100"' in page
    # The bar's text equivalent and legend say what the 40% is made of.
    assert 'aria-valuetext="3 sent, 1 failed, 0 cancelled, 6 not yet sent (of 10 emails)"' in page
    assert "3 sent</li>" in page and "1 failed</li>" in page and "6 not yet sent</li>" in page
    assert "less than a minute" in page


def test_no_time_left_for_jobs_not_running(admin_client_, job):
    row = email_section(admin_client_.get(JSON).json())["jobs"][0]
    assert row["seconds_left"] is None and row["time_left"] == ""


def test_actions_follow_status_and_role(admin_client_, member_client, job):
    page = admin_client_.get(DASHBOARD).content.decode()
    assert reverse("bulkjobs:cancel", args=["email", job.pk]) in page
    assert (
        reverse("bulkjobs:cancel", args=["email", job.pk])
        not in member_client.get(DASHBOARD).content.decode()
    )
    fail_items(job, 1)
    row = email_section(admin_client_.get(JSON).json())["jobs"][0]
    assert row["can_cancel"] is False and row["can_retry"] is True
    assert reverse("bulkjobs:retry", args=["email", job.pk]) in row["html"]
    assert (
        reverse("bulkjobs:retry", args=["email", job.pk])
        not in email_section(member_client.get(JSON).json())["jobs"][0]["html"]
    )


def test_newest_first_and_paginated(admin_client_, company, cards, owner):
    jobs = [
        make_email_job(company, cards=cards, created_by=owner, subject=f"S{n}")
        for n in range(JOBS_PER_PAGE + 3)
    ]
    first = email_section(admin_client_.get(JSON).json())
    assert [row["id"] for row in first["jobs"]] == [j.pk for j in reversed(jobs)][:JOBS_PER_PAGE]
    assert first["num_pages"] == 2
    second = email_section(admin_client_.get(JSON, {"email-page": 2}).json())
    assert [row["id"] for row in second["jobs"]] == [j.pk for j in jobs[:3]][::-1]
    page = admin_client_.get(DASHBOARD, {"email-page": 2}).content.decode()
    assert "Page 2 of 2" in page and f'data-job="{jobs[0].pk}"' in page


# --- processor health line ------------------------------------------------------------


def test_health_warns_when_the_processor_never_ran(admin_client_, job, owner):
    page = admin_client_.get(DASHBOARD).content.decode()
    # Company users get plain words; cron and commands are the platform operators' business.
    assert "has not run for a while" in page and "platform operators" in page
    assert "cron" not in page and "crontab" not in page
    owner.is_staff = True
    owner.save()
    page = admin_client_.get(DASHBOARD).content.decode()
    assert "No email run in the last 5 minutes — is cron set up? See crontab.example" in page
    assert "process_email_jobs" in page


def test_health_shows_last_run_and_warns_when_overdue(admin_client_, job):
    now = timezone.now()
    ProcessorRun.objects.create(kind="email", last_started_at=now - timedelta(minutes=1))
    health = email_section(admin_client_.get(JSON).json())["health"]
    assert health["overdue"] is False
    assert health["message"].startswith("Last email run: ")
    with time_machine.travel(now + timedelta(minutes=5, seconds=5)):
        health = email_section(admin_client_.get(JSON).json())["health"]
    assert health["overdue"] is True
    assert "email jobs has not run for a while" in health["message"]


# --- ETag / 304 -----------------------------------------------------------------------


def etag_of(client, **params):
    response = client.get(JSON, params)
    assert response.status_code == 200
    return response["ETag"]


def test_unchanged_dashboard_answers_304(admin_client_, job):
    etag = etag_of(admin_client_)
    response = admin_client_.get(JSON, headers={"if-none-match": etag})
    assert response.status_code == 304
    assert response["ETag"] == etag
    assert response.content == b""


@pytest.mark.parametrize(
    "change",
    [
        "new job",
        "progress",
        "start",
        "cancel",
        "retry",
        "pause reason after a claim",
        "processor ran",
    ],
)
def test_etag_changes_with_what_the_dashboard_shows(
    change, admin_client_, company, cards, owner, job
):
    now = timezone.now()
    if change == "retry":
        fail_items(job, 1)
    etag = etag_of(admin_client_)
    jobs = BulkEmailJob.objects.filter(pk=job.pk)
    if change == "new job":
        make_email_job(company, cards=cards, created_by=owner)
    elif change == "progress":
        jobs.update(succeeded_items=1, last_processed_at=now)
    elif change == "start":
        jobs.update(status=Status.PROCESSING, started_at=now)
    elif change == "cancel":
        cancel_job(job)
    elif change == "retry":
        retry_failed_items(job)
    elif change == "pause reason after a claim":
        jobs.update(claimed_at=now, reason="Paused, will retry next run: SMTP down")
    elif change == "processor ran":
        ProcessorRun.objects.create(kind="email", last_started_at=now)
    response = admin_client_.get(JSON, headers={"if-none-match": etag})
    assert response.status_code == 200
    assert response["ETag"] != etag


def test_etag_differs_per_page_and_role(admin_client_, member_client, job):
    etag = etag_of(admin_client_)
    assert etag_of(admin_client_, **{"email-page": 2}) != etag
    assert etag_of(member_client) != etag


def test_if_none_match_accepts_a_list(admin_client_, job):
    etag = etag_of(admin_client_)
    response = admin_client_.get(JSON, headers={"if-none-match": f'"stale", {etag}'})
    assert response.status_code == 304


# --- query count is bounded and independent of the number of jobs ---------------------


def make_jobs(company, cards, owner, count):
    for n in range(count):
        make_email_job(company, cards=cards, created_by=owner, subject=f"Job {n}")


#: What the queue of a kind with active jobs shown costs: the activity rows behind its
#: schedule, its active jobs in turn order and the company's pace bucket.
QUEUE = 3


@pytest.mark.parametrize("count", [5, 50])
def test_json_query_count_does_not_grow_with_jobs(
    count, admin_client_, company, cards, owner, django_assert_max_num_queries
):
    admin_client_.get(JSON)  # the company's first poll counts its jobs once (JobCount)
    make_jobs(company, cards, owner, count)
    # session, user, membership, processor runs, job counts; 1 aggregate + 1 page per kind;
    # for the kind with active jobs shown: the activity rows (its schedule) and its queue
    # (the company's active jobs in turn order and its pace bucket: bulkjobs.web.queue).
    with django_assert_max_num_queries(5 + 2 * 2 + QUEUE):
        data = admin_client_.get(JSON).json()
    assert len(email_section(data)["jobs"]) == min(count, JOBS_PER_PAGE)


@pytest.mark.parametrize("count", [5, 50])
def test_304_query_count_does_not_grow_with_jobs(
    count, admin_client_, company, cards, owner, django_assert_max_num_queries
):
    make_jobs(company, cards, owner, count)
    etag = etag_of(admin_client_)
    # No page queries at all when the fingerprints match; no COUNT of the jobs either.
    with django_assert_max_num_queries(5 + 1 * 2):
        assert admin_client_.get(JSON, headers={"if-none-match": etag}).status_code == 304


@pytest.mark.parametrize("count", [5, 50])
def test_page_query_count_does_not_grow_with_jobs(
    count, admin_client_, company, cards, owner, django_assert_max_num_queries
):
    admin_client_.get(DASHBOARD)  # the company's first visit counts its jobs once
    make_jobs(company, cards, owner, count)
    # As the JSON poll, and the activity rows behind the summary numbers.
    with django_assert_max_num_queries(5 + 2 * 2 + QUEUE + 1):
        assert admin_client_.get(DASHBOARD).status_code == 200


def test_query_counts_equal_for_5_and_50_jobs(admin_client_, company, cards, owner):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    admin_client_.get(JSON)  # the company's first poll counts its jobs once (JobCount)
    counts = []
    for total in (5, 50):
        make_jobs(company, cards, owner, total - BulkEmailJob.objects.count())
        with CaptureQueriesContext(connection) as captured:
            admin_client_.get(JSON)
        counts.append(len(captured.captured_queries))
    assert counts[0] == counts[1], counts


def test_items_are_never_loaded_for_the_dashboard(admin_client_, job):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        admin_client_.get(JSON)
    assert not any(BulkEmailJobItem._meta.db_table in q["sql"] for q in captured.captured_queries)


def test_works_as_a_plain_page(admin_client_, job):
    """Without JavaScript: the rows, the actions and the pagination are plain HTML."""
    page = admin_client_.get(DASHBOARD).content.decode()
    assert "<h1>Background jobs</h1>" in page
    assert f'href="/background-jobs/email/{job.pk}/cancel/"' in page
    assert 'src="/static/js/jobs.js" defer' in page
