"""The operators' overview in a real browser (Debian's chromium through Playwright): a
staff user in no company signs in, sees two companies' jobs side by side with their
company, and watches both run to the end while `process_email_jobs --loop` serves both
companies in another process; the queue health table follows, all without a reload.
"""

import time

from django.contrib.auth import get_user_model
from django.urls import reverse

from cards.models import Company
from emails.models import BulkEmailJob
from tests.conftest import make_cards, make_email_job

from .test_browser import processor_running, sign_in, status_of, watch_csp


def cell(page, job, column):
    return page.locator(f'tr[data-job="{job.pk}"] [data-col={column}]').inner_text().strip()


def test_an_operator_watches_two_companies_jobs_live(
    transactional_db,
    live_server,
    settings,
    browser,
    smtp_sink,
    company,
    owner,
    other_company,
    outsider,
    tmp_path,
):
    settings.BULKJOBS_DASHBOARD_POLL_SECONDS = 0.5
    smtp_sink.delay = 0.05
    get_user_model().objects.create_user("operator", password="pw-operator", is_staff=True)
    acme = make_email_job(
        company, cards=make_cards(company, 6), created_by=owner, subject="Acme news"
    )
    globex = make_email_job(
        other_company,
        cards=make_cards(other_company, 6, prefix="Globex"),
        created_by=outsider,
        subject="Globex news",
    )

    page = browser.new_page(viewport={"width": 1366, "height": 900})
    csp_violations = watch_csp(page)
    sign_in(page, live_server.url, "operator")
    page.wait_for_url(live_server.url + reverse("bulkjobs:dashboard"))
    assert "All companies (operator view)" in page.locator(".page-head").inner_text()
    assert cell(page, acme, "company").startswith("Acme")
    assert cell(page, globex, "company").startswith("Globex")
    health = page.locator("[data-queue-health]")
    assert health.locator(f'tr[data-company="{company.pk}"] [data-col=active]').inner_text() == "1"
    page.evaluate("window.__noReload = true")

    with processor_running(smtp_sink, tmp_path):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
            status_of(page, acme) == "Completed" and status_of(page, globex) == "Completed"
        ):
            time.sleep(0.1)
        assert status_of(page, acme) == "Completed"
        assert status_of(page, globex) == "Completed"
        # No company has active jobs any more: the queue health table says so, by itself.
        health.get_by_text("No company has active jobs.").wait_for(timeout=5000)

        # A third company's new job shows up at the top, with its company, by itself.
        initech = Company.objects.create(name="Initech", slug="initech")
        late = make_email_job(initech, cards=make_cards(initech, 2, prefix="Ini"), subject="Late")
        page.locator(f'tr[data-job="{late.pk}"]').wait_for(timeout=15000)
        assert cell(page, late, "company").startswith("Initech")

    assert page.evaluate("window.__noReload") is True
    assert BulkEmailJob.objects.get(pk=acme.pk).succeeded_items == 6
    assert BulkEmailJob.objects.get(pk=globex.pk).succeeded_items == 6
    # Read-only: the operator is offered no cancel, but the admin of each job.
    assert page.locator("a.js-cancel").count() == 0
    admin = reverse("admin:emails_bulkemailjob_change", args=[globex.pk])
    assert page.locator(f'tr[data-job="{globex.pk}"] a[href="{admin}"]').count() == 1
    assert csp_violations == []
