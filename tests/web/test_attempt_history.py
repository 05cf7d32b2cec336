"""The job page shows each item's attempts; Retry says which items it left failed and why."""

import pytest
from django.urls import reverse

from bulkjobs import engine
from bulkjobs.models import Status
from emails.models import BulkEmailJobItem
from tests.conftest import make_email_job

pytestmark = pytest.mark.django_db


@pytest.fixture
def finished_job(company, email_kind, smtp_sink, settings):
    settings.BULKJOBS = {**getattr(settings, "BULKJOBS", {}), "MAX_ATTEMPTS": 1}
    job = make_email_job(company, ["reject@example.net", "tempfail@example.net"])
    engine.run_once(email_kind)
    return job


def test_retry_message_says_how_many_were_left_failed_and_why(admin_client_, finished_job):
    response = admin_client_.post(
        reverse("bulkjobs:retry", args=["email", finished_job.pk]), follow=True
    )
    page = response.content.decode()
    assert (
        f"Email job #{finished_job.pk}, &#x27;Hello&#x27;: 1 failed item(s) queued again." in page
    )
    assert (
        "1 not retried because their addresses are on the suppression list (1 hard bounce)" in page
    )
    statuses = dict(
        BulkEmailJobItem.objects.filter(job=finished_job).values_list("recipient_email", "status")
    )
    assert statuses == {"reject@example.net": Status.FAILED, "tempfail@example.net": Status.PENDING}


def test_retry_with_nothing_retryable_is_a_warning_with_the_reason(admin_client_, finished_job):
    url = reverse("bulkjobs:retry", args=["email", finished_job.pk])
    admin_client_.post(url)
    finished_job.items.filter(recipient_email="tempfail@example.net").update(
        status=Status.COMPLETED
    )
    finished_job.__class__.objects.filter(pk=finished_job.pk).update(
        status=Status.COMPLETED, failed_items=1
    )
    data = admin_client_.post(url, headers={"accept": "application/json"}).json()
    assert data["ok"] is False
    assert "nothing queued again; 1 not retried because their addresses" in data["message"]


def test_job_page_lists_each_attempt_on_the_items_row(admin_client_, finished_job, email_kind):
    admin_client_.post(reverse("bulkjobs:retry", args=["email", finished_job.pk]))
    engine.run_once(email_kind)
    page = admin_client_.get(
        reverse("bulkjobs:job_detail", args=["email", finished_job.pk])
    ).content.decode()
    assert "2 attempts logged" in page
    # Each attempt's reason in the reader's words, the mail server's own quoted.
    assert (
        "Attempt 1: failed: Gave up after 1 attempts: Refused for now by the mail server "
        "(at RCPT); the mail server said: “450"
    ) in page
    assert "Attempt 2: failed: Gave up after 1 attempts" in page
    assert (
        "Attempt 1: failed: Refused by the mail server (at RCPT); the mail server said: “550"
        in page
    )
