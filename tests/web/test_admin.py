"""Django admin for job models: registration, read-only state, bounded item inline, actions."""

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from bulkjobs.admin import INLINE_ITEMS
from bulkjobs.kinds import all_kinds
from bulkjobs.models import Status
from emails.models import BulkEmailJob, BulkEmailJobItem
from tests.conftest import make_cards

from .conftest import client_for, fail_items, make_email_job

CHANGELIST = reverse("admin:emails_bulkemailjob_changelist")


@pytest.fixture
def superuser(db):
    return get_user_model().objects.create_superuser("root", "root@example.com", "pw")


@pytest.fixture
def su_client(superuser):
    return client_for(superuser)


def change_url(job):
    return reverse("admin:emails_bulkemailjob_change", args=[job.pk])


def test_every_kinds_models_are_registered():
    for kind in all_kinds():
        assert admin.site.is_registered(kind.job_model), kind.name
        assert admin.site.is_registered(kind.item_model), kind.name


def test_changelist_columns_filters_and_search(su_client, job, other_job):
    page = su_client.get(CHANGELIST).content.decode()
    for column in ("column-status", "column-progress", "column-company", "column-created_at"):
        assert column in page
    assert 'data-filter-title="status"' in page and 'data-filter-title="company"' in page
    assert "<progress" in page
    found = su_client.get(CHANGELIST, {"q": "Hello"}).content.decode()
    assert f"/{job.pk}/change/" in found
    assert f"/{job.pk}/change/" not in su_client.get(CHANGELIST, {"q": "nothing"}).content.decode()


def test_jobs_cannot_be_added_or_bulk_deleted(su_client, job):
    assert su_client.get(reverse("admin:emails_bulkemailjob_add")).status_code == 403
    assert 'value="delete_selected"' not in su_client.get(CHANGELIST).content.decode()


def test_job_state_cannot_be_edited(su_client, job):
    page = su_client.get(change_url(job)).content.decode()
    assert 'name="status"' not in page
    assert 'name="succeeded_items"' not in page
    assert 'name="claim_token"' not in page
    su_client.post(change_url(job), {"status": "completed", "succeeded_items": 3, "subject": "X"})
    job.refresh_from_db()
    assert (job.status, job.succeeded_items, job.subject) == (Status.PENDING, 0, "Hello")


def test_items_are_read_only(su_client, job):
    item = BulkEmailJobItem.objects.filter(job=job).first()
    url = reverse("admin:emails_bulkemailjobitem_change", args=[item.pk])
    su_client.post(url, {"status": "completed", "recipient_email": "x@example.com"})
    item.refresh_from_db()
    assert (item.status, item.recipient_email) == (Status.PENDING, "person1@example.com")
    assert su_client.get(reverse("admin:emails_bulkemailjobitem_add")).status_code == 403


def job_page_queries(client, job):
    with CaptureQueriesContext(connection) as captured:
        response = client.get(change_url(job))
    assert response.status_code == 200
    return response.content.decode(), len(captured.captured_queries)


def test_item_inline_shows_first_items_with_a_link_and_bounded_queries(su_client, company, owner):
    # 2 items shown against 20: any per-row query (N+1) would make the counts differ.
    small = make_email_job(company, make_cards(company, 2, prefix="Small"), owner)
    big = make_email_job(company, make_cards(company, 1500, prefix="Big"), owner)
    small_page, small_queries = job_page_queries(su_client, small)
    big_page, big_queries = job_page_queries(su_client, big)
    assert big_queries == small_queries
    assert f"first {INLINE_ITEMS}" in big_page
    assert "big1@example.com" in big_page
    assert f"big{INLINE_ITEMS + 1}@example.com" not in big_page
    link = reverse("admin:emails_bulkemailjobitem_changelist") + f"?job__id__exact={big.pk}"
    assert link in big_page
    assert "All 1500 item(s) of this job" in big_page
    items = su_client.get(link).content.decode()
    assert "big1@example.com" in items and "small1@example.com" not in items


def action(client, name, *jobs):
    return client.post(
        CHANGELIST,
        {"action": name, "_selected_action": [job.pk for job in jobs]},
        follow=True,
    )


def test_cancel_action(su_client, company, cards, owner):
    running = make_email_job(company, cards, owner)
    done = fail_items(make_email_job(company, cards, owner), 0)
    response = action(su_client, "cancel_jobs", running, done)
    assert "1 job(s) cancelled; 1 were not active." in response.content.decode()
    running.refresh_from_db()
    done.refresh_from_db()
    assert (running.status, running.cancelled_items) == (Status.CANCELLED, 3)
    assert running.reason == "Cancelled by admin"
    assert done.status == Status.COMPLETED


def test_retry_action(su_client, company, cards, owner):
    failed = fail_items(make_email_job(company, cards, owner), 2)
    running = make_email_job(company, cards, owner)
    response = action(su_client, "retry_jobs", failed, running).content.decode()
    assert "2 failed item(s) of 1 job(s) queued again." in response
    assert f"job(s) {running.pk}" in response
    failed.refresh_from_db()
    assert (failed.status, failed.failed_items) == (Status.PENDING, 0)


def test_release_claim_action(su_client, job):
    BulkEmailJob.objects.filter(pk=job.pk).update(
        status=Status.PROCESSING, claim_token="abc", claimed_at=timezone.now()
    )
    response = action(su_client, "release_claims", job)
    assert "1 claim(s) released." in response.content.decode()
    job.refresh_from_db()
    assert job.claim_token is None and job.status == Status.PROCESSING


def test_company_admins_without_staff_status_cannot_use_the_admin(admin_client_, job):
    response = admin_client_.get(CHANGELIST)
    assert response.status_code == 302
    assert reverse("admin:login") in response["Location"]


def test_admin_actions_require_csrf(superuser, job):
    client = client_for(superuser, enforce_csrf=True)
    data = {"action": "cancel_jobs", "_selected_action": [job.pk]}
    assert client.post(CHANGELIST, data).status_code == 403
    job.refresh_from_db()
    assert job.status == Status.PENDING
    client.get(CHANGELIST)
    data["csrfmiddlewaretoken"] = client.cookies["csrftoken"].value
    assert client.post(CHANGELIST, data).status_code == 302
    job.refresh_from_db()
    assert job.status == Status.CANCELLED
