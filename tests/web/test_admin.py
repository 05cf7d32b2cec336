"""The Django admin: job models' registration, read-only state, bounded item inline, actions
and the permissions they need; the operators' admin versus the company admins' app."""

from io import StringIO

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from bulkjobs.admin import INLINE_ITEMS
from bulkjobs.kinds import all_kinds, get_kind
from bulkjobs.models import Status
from cards.models import BusinessCard, Membership
from emails.models import BulkEmailJob, BulkEmailJobItem
from tests.conftest import make_cards, make_email_job

from .conftest import client_for, fail_items

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


def test_progress_of_a_cancelled_job_is_what_was_worked_on_as_on_the_job_page(
    su_client, owner, company, cards
):
    from bulkjobs.web.rows import job_row

    job = make_email_job(company, cards=cards, created_by=owner)
    # 3 items: one sent, then the job is cancelled (the other two are cancelled items).
    BulkEmailJob.objects.filter(pk=job.pk).update(
        status=Status.CANCELLED, succeeded_items=1, cancelled_items=2
    )
    job.refresh_from_db()
    page = su_client.get(CHANGELIST).content.decode()
    assert '<progress max="100" value="33" title="33%"></progress> 3 / 3' in page
    assert job_row(get_kind("email"), job, timezone.now())["percent"] == 33


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
    small = make_email_job(company, cards=make_cards(company, 2, prefix="Small"), created_by=owner)
    big = make_email_job(company, cards=make_cards(company, 1500, prefix="Big"), created_by=owner)
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
    """Run an admin action, confirmed: the POST its confirmation page's form makes."""
    return client.post(
        CHANGELIST,
        {"action": name, "_selected_action": [job.pk for job in jobs], "post": "yes"},
        follow=True,
    )


def test_cancel_action(su_client, company, cards, owner):
    running = make_email_job(company, cards=cards, created_by=owner)
    done = fail_items(make_email_job(company, cards=cards, created_by=owner), 0)
    response = action(su_client, "cancel_jobs", running, done)
    assert "1 job(s) cancelled; 1 were not active." in response.content.decode()
    running.refresh_from_db()
    done.refresh_from_db()
    assert (running.status, running.cancelled_items) == (Status.CANCELLED, 3)
    assert running.reason == "Cancelled by admin"
    assert done.status == Status.COMPLETED


def test_retry_action(su_client, company, cards, owner):
    failed = fail_items(make_email_job(company, cards=cards, created_by=owner), 2)
    running = make_email_job(company, cards=cards, created_by=owner)
    response = action(su_client, "retry_jobs", failed, running).content.decode()
    assert "2 failed item(s) of 1 job(s) queued again." in response
    assert f"job(s) {running.pk}" in response
    failed.refresh_from_db()
    assert (failed.status, failed.failed_items) == (Status.PENDING, 0)


UNKNOWN_REASON = "Delivery unknown: the mail server received the whole message but ..."


def with_unknown(job):
    """Of a job's failed items, make the first one's delivery unknown."""
    first = job.items.filter(status=Status.FAILED).order_by("id").first()
    job.items.filter(pk=first.pk).update(reason=UNKNOWN_REASON)
    return first


def item_statuses(job):
    return list(job.items.order_by("id").values_list("status", flat=True))


def test_retry_action_leaves_items_whose_delivery_is_unknown_failed(
    su_client, company, cards, owner
):
    job = fail_items(make_email_job(company, cards=cards, created_by=owner), 2)
    with_unknown(job)
    response = action(su_client, "retry_jobs", job).content.decode()
    assert "1 failed item(s) of 1 job(s) queued again." in response
    assert "1 item(s) whose delivery is unknown were not retried" in response
    assert item_statuses(job) == [Status.FAILED, Status.PENDING, Status.COMPLETED]


def test_retry_unknown_action_asks_first_then_queues_only_those(su_client, company, cards, owner):
    job = fail_items(make_email_job(company, cards=cards, created_by=owner), 2)
    with_unknown(job)
    running = make_email_job(company, cards=cards, created_by=owner)
    page = su_client.post(
        CHANGELIST, {"action": "retry_unknown_jobs", "_selected_action": [job.pk, running.pk]}
    )
    assert page.status_code == 200
    text = page.content.decode()
    assert (
        "These recipients may already have received the email; retrying may send it twice." in text
    )
    assert f"{job}</a>: 1 item(s) whose delivery is unknown" in text
    assert 'name="post" value="yes"' in text and 'value="retry_unknown_jobs"' in text
    assert item_statuses(job) == [Status.FAILED, Status.FAILED, Status.COMPLETED]  # asked only

    response = su_client.post(
        CHANGELIST,
        {
            "action": "retry_unknown_jobs",
            "_selected_action": [job.pk, running.pk],
            "post": "yes",
        },
        follow=True,
    ).content.decode()
    assert "1 item(s) whose delivery is unknown of 1 job(s) queued again." in response
    assert f"job(s) {running.pk}" in response
    assert item_statuses(job) == [Status.PENDING, Status.FAILED, Status.COMPLETED]


def test_retry_unknown_action_with_nothing_unknown_says_so(su_client, company, cards, owner):
    job = fail_items(make_email_job(company, cards=cards, created_by=owner), 2)
    page = su_client.post(
        CHANGELIST, {"action": "retry_unknown_jobs", "_selected_action": [job.pk]}
    ).content.decode()
    assert "nothing to retry" in page and 'name="post"' not in page


def test_view_only_staff_can_neither_see_nor_run_the_retry_unknown_action(company, cards, owner):
    job = fail_items(make_email_job(company, cards=cards, created_by=owner), 2)
    with_unknown(job)
    viewer = client_for(staff_with("view_"))
    assert 'value="retry_unknown_jobs"' not in viewer.get(CHANGELIST).content.decode()
    data = {"action": "retry_unknown_jobs", "_selected_action": [job.pk], "post": "yes"}
    viewer.post(CHANGELIST, data)
    assert item_statuses(job) == [Status.FAILED, Status.FAILED, Status.COMPLETED]
    changer = client_for(staff_with("view_", "change_bulkemailjob"))
    assert 'value="retry_unknown_jobs"' in changer.get(CHANGELIST).content.decode()
    changer.post(CHANGELIST, data)
    assert item_statuses(job) == [Status.PENDING, Status.FAILED, Status.COMPLETED]


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
    data = {"action": "cancel_jobs", "_selected_action": [job.pk], "post": "yes"}
    assert client.post(CHANGELIST, data).status_code == 403
    job.refresh_from_db()
    assert job.status == Status.PENDING
    client.get(CHANGELIST)
    data["csrfmiddlewaretoken"] = client.cookies["csrftoken"].value
    assert client.post(CHANGELIST, data).status_code == 302
    job.refresh_from_db()
    assert job.status == Status.CANCELLED


# --- permissions: the admin is the platform operators' tool ---------------------------------


def staff_with(*codenames_or_prefixes):
    """A staff user (no superuser) holding every permission whose codename starts with
    one of the given prefixes ("view_") or equals one of the given codenames."""
    username = "staff-" + "-".join(codenames_or_prefixes)
    user = get_user_model().objects.create_user(username, password="pw", is_staff=True)
    perms = Permission.objects.filter(
        content_type__app_label__in=["cards", "emails", "wallet", "auth"]
    )
    user.user_permissions.set(
        [p for p in perms if any(p.codename.startswith(c) for c in codenames_or_prefixes)]
    )
    return user


def admin_request(user):
    request = RequestFactory().get("/admin/")
    request.user = user
    return request


def test_every_admin_action_declares_the_permission_it_needs(superuser):
    request = admin_request(superuser)
    for model, model_admin in admin.site._registry.items():
        for name, (func, _name, _description) in model_admin.get_actions(request).items():
            assert getattr(func, "allowed_permissions", None), (model.__name__, name)


def make_kind_job(kind, company, user):
    job = kind.job_model.objects.create(company=company, created_by=user, total_items=2)
    kind.item_model.objects.bulk_create(kind.item_model(job=job) for _ in range(2))
    return job


def prepare_for(action_name, kind, job):
    """Put the job in a state in which `action_name` changes it."""
    if action_name == "retry_jobs":
        kind.item_model.objects.filter(job=job).update(status=Status.FAILED, reason="boom")
        kind.job_model.objects.filter(pk=job.pk).update(status=Status.FAILED, failed_items=2)
    elif action_name == "resume_jobs":
        kind.job_model.objects.filter(pk=job.pk).update(status=Status.PAUSED)
    elif action_name == "release_claims":
        kind.job_model.objects.filter(pk=job.pk).update(
            status=Status.PROCESSING, claim_token="abc", claimed_at=timezone.now()
        )


def job_state(kind, job):
    row = kind.job_model.objects.values("status", "failed_items", "claim_token").get(pk=job.pk)
    items = sorted(kind.item_model.objects.filter(job=job).values_list("status", flat=True))
    return row, items


@pytest.mark.parametrize(
    "action_name", ["cancel_jobs", "pause_jobs", "resume_jobs", "retry_jobs", "release_claims"]
)
@pytest.mark.parametrize("kind_name", [kind.name for kind in all_kinds()])
def test_view_only_staff_can_neither_see_nor_run_job_actions(action_name, kind_name, company):
    kind = next(k for k in all_kinds() if k.name == kind_name)
    job = make_kind_job(kind, company, None)
    prepare_for(action_name, kind, job)
    before = job_state(kind, job)
    meta = kind.job_model._meta
    changelist = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
    viewer = client_for(staff_with("view_"))
    page = viewer.get(changelist)
    assert page.status_code == 200
    assert f"/{job.pk}/change/" in page.content.decode()  # the viewer does see the job
    assert f'value="{action_name}"' not in page.content.decode()
    data = {"action": action_name, "_selected_action": [job.pk], "post": "yes"}
    viewer.post(changelist, data)
    assert job_state(kind, job) == before
    # The same POST by a staff user who may change jobs does change it.
    changer = client_for(staff_with("view_", f"change_{meta.model_name}"))
    assert f'value="{action_name}"' in changer.get(changelist).content.decode()
    changer.post(changelist, data)
    assert job_state(kind, job) != before


@pytest.mark.parametrize(
    "model", list(admin.site._registry), ids=lambda model: model._meta.label_lower
)
def test_view_only_staff_is_offered_no_action_on_any_model(model, db):
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    page = client_for(staff_with("view_")).get(url)
    assert page.status_code == 200
    assert 'name="action"' not in page.content.decode()


def test_deleting_needs_the_delete_permission(company, owner, job):
    fail_items(job, 1)
    viewer = client_for(staff_with("view_"))
    delete_url = reverse("admin:emails_bulkemailjob_delete", args=[job.pk])
    assert viewer.post(delete_url, {"post": "yes"}).status_code == 403
    card = job.items.first().card
    cards_changelist = reverse("admin:cards_businesscard_changelist")
    viewer.post(cards_changelist, {"action": "delete_selected", "_selected_action": [card.pk],
                                   "post": "yes"})  # fmt: skip
    assert BulkEmailJob.objects.filter(pk=job.pk).exists()
    assert BusinessCard.objects.filter(pk=card.pk).exists()
    # A staff user with the job's delete permission may delete the finished job, and its
    # items with it, but not a job a run may hold.
    deleter = client_for(staff_with("view_", "delete_bulkemailjob"))
    active = make_email_job(company, cards=[card], created_by=owner)
    active_url = reverse("admin:emails_bulkemailjob_delete", args=[active.pk])
    assert deleter.post(active_url, {"post": "yes"}).status_code == 403
    assert deleter.post(delete_url, {"post": "yes"}).status_code == 302
    assert not BulkEmailJob.objects.filter(pk=job.pk).exists()
    assert not BulkEmailJobItem.objects.filter(job_id=job.pk).exists()
    assert BulkEmailJob.objects.filter(pk=active.pk).exists()


def test_admin_says_it_is_the_platform_operators_tool(su_client):
    page = su_client.get(reverse("admin:index")).content.decode()
    assert "platform operators" in page
    assert "company admins use the app at /background-jobs/" in page


def test_demo_company_admin_works_in_the_app_and_operator_in_the_admin(db, settings):
    settings.DEBUG = True
    out = StringIO()
    call_command("load_demo", stdout=out)
    users = get_user_model().objects
    company_admin, operator = users.get(username="admin"), users.get(username="operator")
    assert not company_admin.is_staff and not company_admin.is_superuser
    assert Membership.objects.get(user=company_admin).role == Membership.Role.ADMIN
    assert operator.is_staff and operator.is_superuser
    assert not Membership.objects.filter(user=operator).exists()
    assert operator.check_password("demo-password")
    assert "operator" in out.getvalue() and "demo-password" in out.getvalue()
    assert client_for(company_admin).get(CHANGELIST).status_code == 302
    assert client_for(company_admin).get(reverse("bulkjobs:dashboard")).status_code == 200
    assert client_for(operator).get(CHANGELIST).status_code == 200
    # Users that exist are never changed, not even to fix an older demo's rights
    # (tests/cards/test_load_demo.py).
    users.filter(pk=company_admin.pk).update(is_staff=True, is_superuser=True)
    call_command("load_demo", stdout=out)
    company_admin.refresh_from_db()
    assert company_admin.is_staff and company_admin.is_superuser
