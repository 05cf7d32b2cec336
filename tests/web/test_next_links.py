"""Every `next` a page takes is checked (config.redirects.safe_next): hostile values are
neither rendered as a link nor followed after an action, on every view that takes one,
while a path on our own site still works."""

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from bulkjobs.models import Status
from bulkjobs.ops.services import Actor, pause_job
from emails.models import BulkEmailJob, BulkEmailJobItem
from tests.conftest import make_email_job

pytestmark = pytest.mark.django_db

HOSTILE = [
    "https://evil.example/phish",
    "//evil.example",
    "///evil.example",
    "javascript:alert(1)",
    " javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "\\\\evil.example",
    "\\/evil.example",
    "/\\evil.example",
    "http:evil.example",
    "data:text/html,<script>alert(1)</script>",
    "https://testserver.evil.example/",
    "http://testserver/over-plain-http-on-https",
]

#: The job views whose confirmation page (GET) renders `next` as its "keep" link, and
#: the actions (POST) that redirect to it.
CONFIRMATION_VIEWS = ["cancel", "pause", "resume", "retry_unknown"]
ACTION_VIEWS = ["cancel", "pause", "resume", "retry", "retry_unknown"]


def assert_not_offered(response, value):
    """Neither the value nor its dangerous host/scheme reaches a link or the redirect."""
    location = response.headers.get("Location", "")
    assert "evil" not in location and "javascript" not in location.lower()
    assert not location.startswith("//")
    text = response.content.decode()
    for attribute in re.findall(r'(?:href|value|action)="([^"]*)"', text):
        assert "evil" not in attribute, attribute
        assert "javascript" not in attribute.lower(), attribute
        assert "data:" not in attribute, attribute
        assert "over-plain-http" not in attribute, attribute


def job_for(view, company):
    """A job the view acts on for real: its confirmation page shows the form."""
    job = make_email_job(company, 2, status=Status.PROCESSING)
    if view == "resume":
        assert pause_job(job, by=Actor.command("test"))
    elif view in ("retry", "retry_unknown"):
        BulkEmailJobItem.objects.filter(job=job).update(
            status=Status.FAILED, reason="Interrupted during delivery; delivery is unknown."
        )
        BulkEmailJob.objects.filter(pk=job.pk).update(status=Status.COMPLETED, failed_items=2)
    job.refresh_from_db()
    return job


def job_url(name, job):
    return reverse(f"bulkjobs:{name}", args=["email", job.pk])


@pytest.mark.parametrize("view", CONFIRMATION_VIEWS)
@pytest.mark.parametrize("value", HOSTILE)
def test_confirmation_pages_never_link_to_a_hostile_next(admin_client_, company, view, value):
    job = job_for(view, company)

    response = admin_client_.get(job_url(view, job), {"next": value}, secure=True)

    assert response.status_code == 200
    assert 'name="next"' in response.text
    assert_not_offered(response, value)
    # The "keep" link falls back to the job's own page.
    assert f'href="{job_url("job_detail", job)}"' in response.text


@pytest.mark.parametrize("view", ACTION_VIEWS)
@pytest.mark.parametrize("value", HOSTILE)
def test_actions_never_redirect_to_a_hostile_next(admin_client_, company, view, value):
    job = job_for(view, company)

    response = admin_client_.post(job_url(view, job), {"next": value}, secure=True)

    assert response.status_code == 302
    assert response.headers["Location"] == reverse("bulkjobs:dashboard")


@pytest.mark.parametrize("view", ACTION_VIEWS)
def test_a_next_on_our_own_site_is_kept(admin_client_, company, view):
    job = job_for(view, company)
    back = job_url("job_detail", job) + "?page=2"

    page = admin_client_.get(job_url(view, job), {"next": back}, secure=True)
    response = admin_client_.post(job_url(view, job), {"next": back}, secure=True)

    if view in CONFIRMATION_VIEWS:
        assert f'href="{back.replace("&", "&amp;")}"' in page.text
    assert response.headers["Location"] == back


@pytest.mark.parametrize("value", HOSTILE)
def test_sign_in_never_offers_or_follows_a_hostile_next(client, owner, value):
    page = client.get(reverse("login"), {"next": value}, secure=True)
    assert_not_offered(page, value)

    response = client.post(
        reverse("login"),
        {"username": "owner", "password": "pw-owner", "next": value},
        secure=True,
    )

    assert response.status_code == 302
    assert response.headers["Location"] == reverse(settings.LOGIN_REDIRECT_URL)


@pytest.mark.parametrize("value", HOSTILE)
def test_the_lockout_page_never_offers_a_hostile_next(client, owner, settings, value):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        response = client.post(
            reverse("login"),
            {"username": "owner", "password": "wrong", "next": value},
            secure=True,
        )

    assert response.status_code == 429
    assert_not_offered(response, value)


def test_every_next_the_code_reads_goes_through_safe_next():
    """A new view reading `next` without the check fails here, whatever its page."""
    root = Path(settings.BASE_DIR)
    offenders = []
    # The project's own packages only: not the tests, benchmarks or any virtualenv
    # (.venv, .venv313, ...), whose libraries read `next` for their own reasons.
    packages = {init.parent.name for init in root.glob("*/__init__.py")} - {"tests", "bench"}
    for path in root.glob("*/**/*.py"):
        if path.parts[len(root.parts)] not in packages:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"""(GET|POST|REQUEST|data)\.get\(\s*["']next["']""", line) and (
                "safe_next(" not in line
            ):
                offenders.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    assert offenders == []
