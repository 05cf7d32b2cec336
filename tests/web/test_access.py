"""Who may see and do what: every endpoint against each persona, CSRF on every POST."""

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from bulkjobs.models import Status
from emails.models import BulkEmailJob

from .conftest import client_for, fail_items

READ_PAGES = [
    ("bulkjobs:dashboard", False),
    ("bulkjobs:jobs_json", False),
    ("cards:list", False),
    ("bulkjobs:job_detail", True),
    ("bulkjobs:job_items_csv", True),
]
START_PAGES = ["emails:send", "wallet:sync"]


def url(name, job=None):
    return reverse(name, args=["email", job.pk]) if job is not None else reverse(name)


def read(client, path):
    """GET a page; a streamed response is consumed so its generator runs (and can fail)."""
    response = client.get(path)
    if response.streaming:
        response.body = b"".join(response.streaming_content)
    return response


@pytest.mark.parametrize("name,per_job", READ_PAGES)
def test_members_of_the_company_can_read(name, per_job, admin_client_, member_client, job):
    for client in (admin_client_, member_client):
        assert read(client, url(name, job if per_job else None)).status_code == 200


@pytest.mark.parametrize("name,per_job", READ_PAGES)
def test_anonymous_users_are_sent_to_sign_in(name, per_job, anon_client, job):
    path = url(name, job if per_job else None)
    response = anon_client.get(path)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={path}"


@pytest.mark.parametrize("name,per_job", READ_PAGES)
def test_users_without_a_company_get_404(name, per_job, job):
    loner = get_user_model().objects.create_user("loner", password="x")
    path = url(name, job if per_job else None)
    assert read(client_for(loner), path).status_code == 404


@pytest.mark.parametrize("name", ["bulkjobs:job_detail", "bulkjobs:job_items_csv"])
def test_other_companies_jobs_are_404(name, outsider_client, admin_client_, job, other_job):
    assert read(outsider_client, url(name, job)).status_code == 404
    assert read(admin_client_, url(name, other_job)).status_code == 404
    assert read(outsider_client, url(name, other_job)).status_code == 200


def test_unknown_kind_is_404(admin_client_, job):
    assert admin_client_.get(f"/background-jobs/nope/{job.pk}/").status_code == 404


def test_dashboard_shows_only_the_users_company(outsider_client, job, other_job):
    ids = [
        row["id"]
        for kind in outsider_client.get(url("bulkjobs:jobs_json")).json()["kinds"]
        for row in kind["jobs"]
    ]
    assert ids == [other_job.pk]
    page = outsider_client.get(url("bulkjobs:dashboard")).content.decode()
    assert f'data-job="{other_job.pk}"' in page
    assert f'data-job="{job.pk}"' not in page


@pytest.mark.parametrize("name", START_PAGES)
def test_start_pages_are_for_company_admins(name, admin_client_, member_client, anon_client, job):
    assert admin_client_.get(url(name)).status_code in (200, 503)
    assert member_client.get(url(name)).status_code == 403
    assert member_client.post(url(name), {"card_mode": "all"}).status_code == 403
    assert anon_client.get(url(name)).status_code == 302


def test_cancel_confirm_page_access(
    admin_client_, member_client, outsider_client, anon_client, job
):
    path = url("bulkjobs:cancel", job)
    assert admin_client_.get(path).status_code == 200
    assert member_client.get(path).status_code == 403
    assert outsider_client.get(path).status_code == 404
    assert anon_client.get(path).status_code == 302


def test_members_and_outsiders_cannot_cancel(member_client, outsider_client, anon_client, job):
    path = url("bulkjobs:cancel", job)
    assert member_client.post(path).status_code == 403
    assert outsider_client.post(path).status_code == 404
    assert anon_client.post(path).status_code == 302
    job.refresh_from_db()
    assert job.status == Status.PENDING


def test_members_and_outsiders_cannot_retry(member_client, outsider_client, anon_client, job):
    fail_items(job, 2)
    path = url("bulkjobs:retry", job)
    assert member_client.post(path).status_code == 403
    assert outsider_client.post(path).status_code == 404
    assert anon_client.post(path).status_code == 302
    job.refresh_from_db()
    assert (job.status, job.failed_items) == (Status.COMPLETED, 2)


def test_retry_is_post_only(admin_client_, job):
    assert admin_client_.get(url("bulkjobs:retry", job)).status_code == 405


def test_an_admin_cannot_act_on_another_companys_job(admin_client_, other_job):
    assert admin_client_.post(url("bulkjobs:cancel", other_job)).status_code == 404
    other_job.refresh_from_db()
    assert other_job.status == Status.PENDING


# --- CSRF: every POST refuses a request without the token -----------------------------


def csrf_token(client, path):
    client.get(path)
    return client.cookies["csrftoken"].value


def test_cancel_requires_csrf(owner, job):
    client = client_for(owner, enforce_csrf=True)
    path = url("bulkjobs:cancel", job)
    assert client.post(path).status_code == 403
    job.refresh_from_db()
    assert job.status == Status.PENDING
    token = csrf_token(client, path)
    assert client.post(path, {"csrfmiddlewaretoken": token}).status_code == 302
    job.refresh_from_db()
    assert job.status == Status.CANCELLED


def test_cancel_from_script_needs_the_token_too(owner, job):
    client = client_for(owner, enforce_csrf=True)
    path = url("bulkjobs:cancel", job)
    assert client.post(path, headers={"accept": "application/json"}).status_code == 403
    token = csrf_token(client, url("bulkjobs:dashboard"))
    response = client.post(path, headers={"accept": "application/json", "x-csrftoken": token})
    assert response.json()["ok"] is True


def test_retry_requires_csrf(owner, job):
    fail_items(job, 1)
    client = client_for(owner, enforce_csrf=True)
    path = url("bulkjobs:retry", job)
    assert client.post(path).status_code == 403
    assert BulkEmailJob.objects.get(pk=job.pk).failed_items == 1
    token = csrf_token(client, url("bulkjobs:job_detail", job))
    assert client.post(path, {"csrfmiddlewaretoken": token}).status_code == 302
    assert BulkEmailJob.objects.get(pk=job.pk).status == Status.PENDING


@pytest.mark.parametrize("name", START_PAGES)
def test_start_forms_require_csrf(name, owner, cards):
    client = client_for(owner, enforce_csrf=True)
    data = {"card_mode": "all", "recipient_mode": "holders", "subject": "Hi", "action": "start"}
    assert client.post(url(name), data).status_code == 403
    assert BulkEmailJob.objects.count() == 0


def test_sign_out_requires_csrf(owner):
    client = client_for(owner, enforce_csrf=True)
    assert client.post(reverse("logout")).status_code == 403
    assert client.get(url("bulkjobs:dashboard")).status_code == 200
    token = csrf_token(client, url("bulkjobs:dashboard"))
    client.post(reverse("logout"), {"csrfmiddlewaretoken": token})
    assert client.get(url("bulkjobs:dashboard")).status_code == 302


def test_sign_in_page_and_csrf(owner):
    client = client_for(None, enforce_csrf=True)
    page = client.get(reverse("login"))
    assert page.status_code == 200
    assert b"<h1>Sign in</h1>" in page.content
    assert (
        client.post(reverse("login"), {"username": "owner", "password": "pw-owner"}).status_code
        == 403
    )
    token = client.cookies["csrftoken"].value
    response = client.post(
        reverse("login"),
        {"username": "owner", "password": "pw-owner", "csrfmiddlewaretoken": token},
    )
    assert response["Location"] == reverse("bulkjobs:dashboard")


def test_site_root_leads_to_the_dashboard(admin_client_, anon_client):
    assert admin_client_.get("/", follow=True).redirect_chain[-1][0] == url("bulkjobs:dashboard")
    assert anon_client.get("/", follow=True).redirect_chain[-1][0].startswith(reverse("login"))
