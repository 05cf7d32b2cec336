"""Pausing and resuming a job from its page in a real browser (Debian's chromium through
Playwright): each asks first, the page then says who paused it and when, a processor run
meanwhile sends nothing, and resuming puts it back where it stopped."""

import re

from django.contrib.auth import get_user_model
from django.urls import reverse

from bulkjobs import engine
from bulkjobs.kinds import get_kind
from bulkjobs.models import Status
from emails.models import BulkEmailJob, BulkEmailJobItem
from tests.conftest import make_cards, make_email_job

from .test_browser import sign_in, watch_csp

DESKTOP = {"width": 1366, "height": 900}


def test_pause_and_resume_a_job_from_its_page(
    transactional_db, live_server, browser, company, owner, settings
):
    settings.TIME_ZONE = "UTC"
    get_user_model().objects.filter(pk=owner.pk).update(first_name="Olivia", last_name="Owner")
    job = make_email_job(
        company, cards=make_cards(company, 10), created_by=owner, subject="Newsletter Dezember"
    )
    items = list(BulkEmailJobItem.objects.filter(job=job).order_by("id"))
    BulkEmailJobItem.objects.filter(pk__in=[i.pk for i in items[:3]]).update(
        status=Status.COMPLETED
    )
    BulkEmailJob.objects.filter(pk=job.pk).update(
        status=Status.PROCESSING, succeeded_items=3, started_at=job.created_at
    )
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    violations = watch_csp(page)
    sign_in(page, live_server.url, "owner")
    page.wait_for_url(live_server.url + reverse("bulkjobs:dashboard"))
    # The dashboard row offers it too; the job page is where this test pauses.
    row = page.locator(f'tr[data-job="{job.pk}"]')
    assert row.get_by_role("link", name=f"Pause job {job.pk}").is_visible()
    detail = reverse("bulkjobs:job_detail", args=["email", job.pk])
    page.goto(live_server.url + detail)

    # Pause: a confirmation page first; nothing changes until it is confirmed.
    page.get_by_role("link", name="Pause job").click()
    page.wait_for_url(re.compile(r".*/pause/\?next=.*"))
    assert f"Pause email job #{job.pk}?" in page.locator("h1").inner_text()
    assert BulkEmailJob.objects.get(pk=job.pk).status == Status.PROCESSING
    page.get_by_role("button", name="Pause job").click()
    page.wait_for_url(live_server.url + detail)
    message = page.locator(".messages .message").inner_text()
    assert f"Email job #{job.pk}, 'Newsletter Dezember' paused after 3 sent" in message
    assert page.locator("h1 .badge").inner_text() == "Paused"
    said = page.locator("[data-last-action]").inner_text()
    assert re.fullmatch(r"Paused by Olivia Owner at \d\d:\d\d UTC", said), said
    assert page.get_by_role("link", name="Pause job").count() == 0

    # A processor run while paused sends nothing.
    assert engine.run_once(get_kind("email")).items_succeeded == 0
    assert BulkEmailJobItem.objects.filter(job=job, status=Status.PENDING).count() == 7

    # Resume: asks first, then the job is back to be processed, with its history.
    page.get_by_role("link", name="Resume job").click()
    page.wait_for_url(re.compile(r".*/resume/\?next=.*"))
    assert said in page.locator("main").inner_text()
    page.get_by_role("button", name="Resume job").click()
    page.wait_for_url(live_server.url + detail)
    assert "resumed" in page.locator(".messages .message").inner_text()
    assert page.locator("h1 .badge").inner_text() == "Processing"
    history = page.locator("[data-history] li").all_inner_texts()
    assert [entry.split(" at ")[0] for entry in history] == [
        "Resumed by Olivia Owner",
        "Paused by Olivia Owner",
    ]
    assert page.get_by_role("link", name="Pause job").is_visible()
    assert BulkEmailJob.objects.get(pk=job.pk).status == Status.PROCESSING
    assert engine.run_once(get_kind("email")).items_succeeded == 7
    assert violations == []
