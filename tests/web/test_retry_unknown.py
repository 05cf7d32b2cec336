"""The job page's "Retry N items whose delivery is unknown": a confirmation page that states
the risk, then a CSRF-protected POST that queues those items and no others; company
admins only, 404 for other companies. "Retry failed items" leaves them failed and says so.
"""

import pytest
from django.urls import reverse

from bulkjobs.models import Status
from cards.models import Company
from emails.models import BulkEmailJob, BulkEmailJobItem

from .conftest import client_for

pytestmark = pytest.mark.django_db

UNKNOWN_REASON = (
    "Delivery unknown: the mail server received the whole message but the connection was "
    "lost before it confirmed (no reply within EMAIL_TIMEOUT = 20 s); not resent "
    "automatically. If it did not arrive, use 'Retry items whose delivery is unknown'."
)
RISK = "These recipients may already have received the email; retrying may send it twice."


@pytest.fixture
def finished(job):
    """A completed job of three: one item whose delivery is unknown, one interrupted
    mid-delivery (unknown too), one rejected (an ordinary failure)."""
    first, second, third = BulkEmailJobItem.objects.filter(job=job).order_by("id")
    for item, reason in [
        (first, UNKNOWN_REASON),
        (second, "Interrupted during delivery; delivery is unknown and it was not resent."),
        (third, "Rejected at DATA: 554 5.6.0 Message content rejected"),
    ]:
        BulkEmailJobItem.objects.filter(pk=item.pk).update(
            status=Status.FAILED, reason=reason, attempts=1
        )
    BulkEmailJob.objects.filter(pk=job.pk).update(status=Status.COMPLETED, failed_items=3)
    job.refresh_from_db()
    return job


def url(name, job):
    return reverse(name, args=["email", job.pk])


def statuses(job):
    return list(job.items.order_by("id").values_list("status", flat=True))


def test_the_job_page_offers_the_two_groups_separately(admin_client_, member_client, finished):
    page = admin_client_.get(url("bulkjobs:job_detail", finished)).content.decode()
    assert "Retry 1 failed item<" in page
    confirm = url("bulkjobs:retry_unknown", finished)
    assert f'href="{confirm}?next=' in page
    assert "Retry 2 items whose delivery is unknown</a>" in page
    # Members see neither.
    page = member_client.get(url("bulkjobs:job_detail", finished)).content.decode()
    assert "Retry 1 failed item" not in page and confirm not in page


def test_only_unknown_failures_offer_only_their_action(admin_client_, finished):
    finished.items.filter(reason__startswith="Rejected").update(status=Status.COMPLETED)
    BulkEmailJob.objects.filter(pk=finished.pk).update(failed_items=2)
    page = admin_client_.get(url("bulkjobs:job_detail", finished)).content.decode()
    assert "failed item" not in page
    assert "Retry 2 items whose delivery is unknown" in page


def test_the_confirmation_states_the_risk_and_lists_the_items(admin_client_, finished):
    response = admin_client_.get(url("bulkjobs:retry_unknown", finished), {"next": "/x/"})
    assert response.status_code == 200
    page = response.content.decode()
    assert "<h1>Retry 2 items whose delivery is unknown?</h1>" in page
    assert RISK in page
    unknown = finished.items.order_by("id")[:2]
    for item in unknown:
        assert item.recipient_email in page
    rejected = finished.items.get(reason__startswith="Rejected")
    assert rejected.recipient_email not in page
    assert 'method="post"' in page and "csrfmiddlewaretoken" in page
    assert 'name="next" value="/x/"' in page
    assert statuses(finished) == [Status.FAILED] * 3  # looking changes nothing


def test_confirming_queues_only_the_items_whose_delivery_is_unknown(admin_client_, finished):
    detail = url("bulkjobs:job_detail", finished)
    response = admin_client_.post(
        url("bulkjobs:retry_unknown", finished), {"next": detail}, follow=True
    )
    assert response.redirect_chain[-1][0] == detail
    assert (
        f"Email job #{finished.pk}, &#x27;Hello&#x27;: 2 items whose delivery is unknown "
        "queued again." in response.content.decode()
    )
    assert statuses(finished) == [Status.PENDING, Status.PENDING, Status.FAILED]
    finished.refresh_from_db()
    assert (finished.status, finished.failed_items) == (Status.PENDING, 1)


def test_confirming_twice_finds_nothing_to_do(admin_client_, finished):
    path = url("bulkjobs:retry_unknown", finished)
    admin_client_.post(path)
    data = admin_client_.post(path, headers={"accept": "application/json"}).json()
    assert data["ok"] is False
    assert "only completed or failed jobs can be retried" in data["message"]
    page = admin_client_.get(path).content.decode()
    assert "This job has no items whose delivery is unknown to retry." in page
    assert RISK not in page


def test_retry_failed_items_leaves_them_failed_and_says_so(admin_client_, finished):
    response = admin_client_.post(url("bulkjobs:retry", finished), follow=True)
    assert (
        f"Email job #{finished.pk}, &#x27;Hello&#x27;: 1 failed item(s) queued again. "
        "2 items whose delivery is unknown were not retried." in response.content.decode()
    )
    assert statuses(finished) == [Status.FAILED, Status.FAILED, Status.PENDING]


def test_retry_failed_items_with_only_unknown_failures_is_a_warning(admin_client_, finished):
    finished.items.filter(reason__startswith="Rejected").update(status=Status.COMPLETED)
    data = admin_client_.post(
        url("bulkjobs:retry", finished), headers={"accept": "application/json"}
    ).json()
    assert (data["ok"], data["level"]) == (False, "warning")
    assert data["message"].endswith(
        "nothing queued again; 2 items whose delivery is unknown were not retried."
    )
    assert statuses(finished) == [Status.FAILED, Status.FAILED, Status.COMPLETED]


def test_members_outsiders_and_anonymous_users_cannot_retry_them(
    member_client, outsider_client, anon_client, finished
):
    """The outsider is an admin of another company: still a stranger to this job."""
    path = url("bulkjobs:retry_unknown", finished)
    for method in ("get", "post"):
        assert getattr(member_client, method)(path).status_code == 403
        assert getattr(outsider_client, method)(path).status_code == 404
        assert getattr(anon_client, method)(path).status_code == 302
    assert statuses(finished) == [Status.FAILED] * 3


def test_only_get_and_post(admin_client_, finished):
    path = url("bulkjobs:retry_unknown", finished)
    assert admin_client_.put(path).status_code == 405
    assert admin_client_.delete(path).status_code == 405


def test_confirming_requires_csrf(owner, finished):
    client = client_for(owner, enforce_csrf=True)
    path = url("bulkjobs:retry_unknown", finished)
    assert client.post(path).status_code == 403
    assert statuses(finished) == [Status.FAILED] * 3
    client.get(path)
    token = client.cookies["csrftoken"].value
    assert client.post(path, {"csrfmiddlewaretoken": token}).status_code == 302
    assert statuses(finished) == [Status.PENDING, Status.PENDING, Status.FAILED]


def test_the_confirmation_speaks_german(admin_client_, finished):
    Company.objects.filter(pk=finished.company_id).update(language="de")
    page = admin_client_.get(url("bulkjobs:retry_unknown", finished)).content.decode()
    assert "2 Einträge mit unbekannter Zustellung wiederholen?" in page
    assert "Diese Empfänger haben die E-Mail möglicherweise schon erhalten" in page
