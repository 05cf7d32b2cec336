"""Job detail page, CSV export, and the cancel/retry actions through the web."""

import csv
import io

from django.urls import reverse

from bulkjobs.models import Status
from bulkjobs.web.views import ITEMS_PER_PAGE
from emails.models import BulkEmailJob, BulkEmailJobItem
from tests.conftest import make_cards, make_email_job

from .conftest import fail_items


def detail(job):
    return reverse("bulkjobs:job_detail", args=["email", job.pk])


def test_detail_shows_facts_and_failure_reasons(admin_client_, job):
    fail_items(job, 1, reason="Rejected at RCPT: 550 mailbox unavailable")
    page = admin_client_.get(detail(job)).content.decode()
    assert f"Email job #{job.pk}: Hello" in page
    assert "Subject</dt><dd>Hello" in page
    assert (
        "Refused by the mail server (at RCPT); the mail server said: “550 mailbox unavailable”"
        in page
    )
    assert "2 sent, 1 failed, 0 cancelled, 0 not yet sent (of 3 emails)" in page
    assert "Completed with 1 failed" in page
    assert "person1@example.com" in page
    # Items name the card's holder, not its id.
    assert '<td data-label="Card">Person 1</td>' in page and "Card id" not in page
    assert "Retry 1 failed item" in page


def test_detail_filters_items_by_status(admin_client_, job):
    fail_items(job, 1)
    page = admin_client_.get(detail(job), {"status": "failed"}).content.decode()
    assert "person1@example.com" in page
    assert "person2@example.com" not in page
    assert (
        'aria-current="true" class="active" data-filter="failed">Failed <span class="count">1</span>'
        in page
    )
    everything = admin_client_.get(detail(job), {"status": "bogus"}).content.decode()
    assert "person2@example.com" in everything


def test_detail_paginates_items(admin_client_, company, owner):
    job = make_email_job(company, cards=make_cards(company, ITEMS_PER_PAGE + 5), created_by=owner)
    first = admin_client_.get(detail(job)).content.decode()
    assert f"person{ITEMS_PER_PAGE}@example.com" in first
    assert f"person{ITEMS_PER_PAGE + 1}@example.com" not in first
    second = admin_client_.get(detail(job), {"page": 2}).content.decode()
    assert f"person{ITEMS_PER_PAGE + 1}@example.com" in second
    assert "Page 2 of 2" in second


def read_csv(response):
    assert response.streaming
    body = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(body)))


def test_csv_export_streams_every_item_with_kind_columns(admin_client_, job):
    fail_items(job, 1, reason='=HYPERLINK("http://evil")')
    response = admin_client_.get(reverse("bulkjobs:job_items_csv", args=["email", job.pk]))
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert f'filename="email-job-{job.pk}-items.csv"' in response["Content-Disposition"]
    rows = read_csv(response)
    # Headers and statuses in the reader's language, like the job page.
    assert rows[0] == [
        "Item",
        "Status",
        "Reason",
        "Attempts",
        "Processed",
        "Card",
        "Recipient email",
        "Recipient name",
        "Bounce",
        "Bounce status",
        "Soft bounces",
    ]
    assert len(rows) == 4
    first = rows[1]
    assert first[1] == "Failed" and first[3] == "3"
    # A spreadsheet must not evaluate a reason as a formula.
    assert first[2].startswith("'=HYPERLINK")
    assert first[6] == "person1@example.com"


def test_csv_export_by_status(admin_client_, job):
    fail_items(job, 1)
    response = admin_client_.get(
        reverse("bulkjobs:job_items_csv", args=["email", job.pk]), {"status": "completed"}
    )
    rows = read_csv(response)
    assert [row[1] for row in rows[1:]] == ["Completed", "Completed"]


# --- cancel ---------------------------------------------------------------------------


def test_cancel_confirmation_then_post(admin_client_, job):
    path = reverse("bulkjobs:cancel", args=["email", job.pk])
    confirm = admin_client_.get(path).content.decode()
    assert f"Cancel email job #{job.pk}, &#x27;Hello&#x27;: 3 emails not yet sent?" in confirm
    assert 'method="post"' in confirm and "csrfmiddlewaretoken" in confirm
    assert BulkEmailJob.objects.get(pk=job.pk).status == Status.PENDING
    response = admin_client_.post(path, follow=True)
    assert response.redirect_chain[-1][0] == reverse("bulkjobs:dashboard")
    page = response.content.decode()
    assert (
        f'role="status">Email job #{job.pk}, &#x27;Hello&#x27; cancelled after 0 sent; '
        "3 emails will not be sent.</li>"
    ) in page
    job.refresh_from_db()
    assert (job.status, job.cancelled_items, job.reason) == (
        Status.CANCELLED,
        3,
        "Cancelled by user",
    )
    assert set(BulkEmailJobItem.objects.filter(job=job).values_list("status", flat=True)) == {
        Status.CANCELLED
    }


def test_cancel_returns_to_a_local_next_only(admin_client_, company, cards, owner):
    job = make_email_job(company, cards=cards, created_by=owner)
    path = reverse("bulkjobs:cancel", args=["email", job.pk])
    response = admin_client_.post(path, {"next": detail(job)})
    assert response["Location"] == detail(job)
    other = make_email_job(company, cards=cards, created_by=owner)
    response = admin_client_.post(
        reverse("bulkjobs:cancel", args=["email", other.pk]), {"next": "https://evil.example/"}
    )
    assert response["Location"] == reverse("bulkjobs:dashboard")


def test_cancel_json_answer_for_the_dialog(admin_client_, job):
    path = reverse("bulkjobs:cancel", args=["email", job.pk])
    data = admin_client_.post(path, headers={"accept": "application/json"}).json()
    assert data == {
        "ok": True,
        "message": f"Email job #{job.pk}, 'Hello' cancelled after 0 sent; 3 emails will not be sent.",
        "level": "success",
        "status": "cancelled",
    }
    again = admin_client_.post(path, headers={"accept": "application/json"}).json()
    assert again["ok"] is False and "nothing to cancel" in again["message"]


def test_cancel_page_for_a_finished_job_offers_nothing(admin_client_, job):
    fail_items(job, 0)
    page = admin_client_.get(reverse("bulkjobs:cancel", args=["email", job.pk])).content.decode()
    assert "there is nothing to cancel" in page
    assert 'method="post"' not in page.split("<main")[1]


# --- retry ----------------------------------------------------------------------------


def test_retry_failed_items(admin_client_, job):
    fail_items(job, 2)
    response = admin_client_.post(reverse("bulkjobs:retry", args=["email", job.pk]), follow=True)
    assert f"Email job #{job.pk}, &#x27;Hello&#x27;: 2 failed item(s) queued again." in (
        response.content.decode()
    )
    job.refresh_from_db()
    assert (job.status, job.failed_items, job.succeeded_items) == (Status.PENDING, 0, 1)
    assert BulkEmailJobItem.objects.filter(job=job, status=Status.PENDING).count() == 2


def test_retry_refuses_running_jobs(admin_client_, job):
    response = admin_client_.post(
        reverse("bulkjobs:retry", args=["email", job.pk]), headers={"accept": "application/json"}
    )
    data = response.json()
    assert data["ok"] is False and "only completed or failed jobs" in data["message"]
    job.refresh_from_db()
    assert job.status == Status.PENDING


def test_retry_with_nothing_failed(admin_client_, job):
    fail_items(job, 0)
    response = admin_client_.post(reverse("bulkjobs:retry", args=["email", job.pk]), follow=True)
    assert "has no failed items to retry" in response.content.decode()
    job.refresh_from_db()
    assert job.status == Status.COMPLETED
