"""The failure workbench, live tiles and the layout in a real browser (Debian's chromium
through Playwright): a job with failures found by "With failed items", a recipient found
by the job page's search, a Retry whose count is what it queues, the "Today" tiles and
the tab title moving after a processor run without a reload, and every page fitting
1280, 1366 and 390 px with realistic long data (a wallet job's results included), the
first job on a phone's first screen, readable charts, toasts that close by themselves and
a cancel dialog that focuses "Keep running".
"""

import re

from django.urls import reverse

from bulkjobs.engine.activity import record_batch_activity
from bulkjobs.models import Status
from emails.models import BulkEmailJob, BulkEmailJobItem, EmailSuppression
from tests.conftest import make_cards, make_email_job
from tests.web.test_job_ui import make_wallet_job
from wallet.models import BulkWalletApiJob, BulkWalletApiJobItem, PlatformResult

from .test_browser import processor_running
from .test_browser_job_pages import DESKTOP, PHONE, fits_the_viewport, in_view, open_page

WIDTHS = (1280, 1366, 390)


def bounced_job(company, owner, subject="Fair follow-up"):
    """Five emails: two to addresses that do not exist (now suppressed), one to a full
    mailbox, two sent."""
    job = make_email_job(
        company, [f"kunde{n}@firma.de" for n in range(1, 6)], created_by=owner, subject=subject
    )
    items = list(BulkEmailJobItem.objects.filter(job=job).order_by("id"))
    for item, reply in (
        (items[0], "550 5.1.1 User unknown"),
        (items[1], "550 5.1.1 User unknown"),
        (items[2], "552 5.2.2 Mailbox full"),
    ):
        BulkEmailJobItem.objects.filter(pk=item.pk).update(
            status=Status.FAILED,
            reason=f"Rejected at RCPT: {reply}",
            reason_code="smtp_rejected",
            reason_params={"stage": "RCPT"},
            provider_reply=reply,
            attempts=1,
        )
        if reply.startswith("550"):
            EmailSuppression.objects.create(
                company=company, email=item.recipient_email, reason="bounced"
            )
    BulkEmailJobItem.objects.filter(pk__in=[i.pk for i in items[3:]]).update(
        status=Status.COMPLETED
    )
    BulkEmailJob.objects.filter(pk=job.pk).update(
        status=Status.COMPLETED, succeeded_items=2, failed_items=3
    )
    return job


def test_failures_found_searched_grouped_and_retried(
    transactional_db, live_server, browser, company, owner
):
    failed = bounced_job(company, owner)
    clean = make_email_job(company, 2, created_by=owner, subject="All good")
    BulkEmailJob.objects.filter(pk=clean.pk).update(status=Status.COMPLETED, succeeded_items=2)
    page, violations = open_page(browser, live_server, "owner", DESKTOP)

    # "With failed items" finds the job that completed with failures, not the clean one.
    filters = page.locator("details.filter-toggle")
    assert filters.get_attribute("open") is None
    filters.locator("summary").click()
    page.get_by_label("Status").select_option(label="With failed items")
    page.get_by_role("button", name="Filter", exact=True).click()
    page.wait_for_url("**status=has_failures**")
    assert page.locator(f'tr[data-job="{failed.pk}"]').is_visible()
    assert page.locator(f'tr[data-job="{clean.pk}"]').count() == 0
    assert "Completed with 3 failed" in page.locator(f'tr[data-job="{failed.pk}"]').inner_text()
    # The row offers to retry only the one item Retry would queue.
    row_retry = page.locator(f'tr[data-job="{failed.pk}"]').get_by_role("button", name="Retry")
    assert row_retry.inner_text().startswith("Retry 1 failed")

    # The job page: causes in plain words, and search by the start of an address.
    page.locator(f'tr[data-job="{failed.pk}"] a.job-link').click()
    groups = page.locator("[data-failures]")
    assert groups.inner_text().splitlines() == [
        "2 × address does not exist: blocked (hard bounce), cannot be retried",
        "1 × mailbox full: can be retried",
    ]
    search = page.get_by_label("Find a recipient: address or name starts with")
    search.fill("KUNDE3")
    search.press("Enter")
    page.wait_for_url("**q=KUNDE3**")
    assert page.locator("[data-search-result]").inner_text() == "1 item starts with “KUNDE3”."
    rows = page.locator("table.items tbody tr")
    assert rows.count() == 1 and "kunde3@firma.de" in rows.inner_text()

    # Retry says and queues the one retryable item; then there is nothing left to retry.
    retry = page.get_by_role("button", name="Retry 1 failed item")
    retry.click()
    page.locator("#toasts .toast.success").wait_for(timeout=5000)
    queued = BulkEmailJobItem.objects.filter(job=failed, status=Status.PENDING)
    assert [i.recipient_email for i in queued] == ["kunde3@firma.de"]
    page.wait_for_function(
        "() => !document.querySelector('[data-part=head] form[action$=\"/retry/\"]')",
        timeout=10000,
    )
    assert violations == []


def test_tiles_and_tab_title_follow_a_processor_run(
    transactional_db, live_server, settings, browser, smtp_sink, company, owner, tmp_path
):
    settings.BULKJOBS_DASHBOARD_POLL_SECONDS = 0.4
    job = make_email_job(company, cards=make_cards(company, 6), created_by=owner, subject="Tiles")
    page, violations = open_page(browser, live_server, "owner", DESKTOP)
    page.evaluate("window.__noReload = true")
    sent = page.locator('dl[data-numbers="email"] dd.ok')
    queued = page.locator('dl[data-numbers="email"] div:nth-child(3) dd')
    assert (sent.inner_text(), queued.inner_text()) == ("0", "6")
    job_page = page.context.new_page()
    job_page.goto(live_server.url + reverse("bulkjobs:job_detail", args=["email", job.pk]))
    assert job_page.title().startswith(f"0% · Email job #{job.pk}")
    with processor_running(smtp_sink, tmp_path):
        page.wait_for_function(
            "() => document.querySelector('dl[data-numbers=email] dd.ok').innerText === '6'",
            timeout=60000,
        )
        job_page.wait_for_function(
            "id => document.title.startsWith(`Completed · Email job #${id}`)",
            arg=job.pk,
            timeout=30000,
        )
    assert queued.inner_text() == "0"
    assert page.evaluate("window.__noReload") is True
    assert violations == []


def long_data(company, owner):
    """Jobs as they come: long subjects, addresses and provider replies, and a wallet job
    whose items carry both platforms' results and long details."""
    name = "Maximiliane Theresia von Hohenzollern-Sigmaringen"
    cards = make_cards(company, 8, prefix="Max")
    for n, card in enumerate(cards):
        card.full_name = f"{name} {n}"
        card.save(update_fields=["full_name"])
    email = bounced_job(company, owner, subject="Einladung zur Jahreshauptversammlung " * 4)
    BulkEmailJobItem.objects.filter(job=email, status=Status.FAILED).update(
        recipient_email="maximiliane.theresia.von.hohenzollern-sigmaringen@"
        "sehr-lange-firmenbezeichnung-international.example.com",
        provider_reply="550 5.1.1 "
        + "The email account that you tried to reach does not exist " * 4,
    )
    wallet = make_wallet_job(company, cards, owner, status=Status.COMPLETED)
    detail = "Pass updated; 3 devices notified. " + "Google Wallet object 3388000000022 " * 3
    BulkWalletApiJobItem.objects.filter(job=wallet).update(
        status=Status.COMPLETED,
        attempts=1,
        apple_result=PlatformResult.SYNCED,
        apple_detail=detail,
        google_result=PlatformResult.FAILED,
        google_detail="Google Wallet patch: HTTP 404: " + "resource not found " * 8,
        reason="Apple Wallet synced; Google Wallet failed.",
    )
    BulkWalletApiJob.objects.filter(pk=wallet.pk).update(succeeded_items=8)
    running = make_email_job(company, cards=cards, created_by=owner, subject="Running now")
    BulkEmailJob.objects.filter(pk=running.pk).update(status=Status.PROCESSING)
    record_batch_activity(
        company.pk, "email", email.created_at, processed=40, failed=3, attempts=40, busy_seconds=9
    )
    return email, wallet, running


def test_no_page_overflows_at_desktop_and_phone_widths(
    transactional_db, live_server, browser, company, owner
):
    email, wallet, running = long_data(company, owner)
    page, violations = open_page(browser, live_server, "owner", DESKTOP)
    pages = {
        "dashboard": reverse("bulkjobs:dashboard"),
        "email job": reverse("bulkjobs:job_detail", args=["email", email.pk]),
        "wallet job": reverse("bulkjobs:job_detail", args=["wallet", wallet.pk]),
        "activity": reverse("bulkjobs:activity"),
        "send": reverse("emails:send"),
        "sync": reverse("wallet:sync"),
    }
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900 if width > 400 else 844})
        for name, path in pages.items():
            page.goto(live_server.url + path)
            assert fits_the_viewport(page), f"{name} is wider than {width} px"
            if width > 400:
                # At desktop widths every table fits its box: no column cut off or
                # scrolled away (the wallet job's Attempts, Processed, Reason).
                cut = page.evaluate(
                    """() => [...document.querySelectorAll('.table-box')].filter(
                        (box) => box.scrollWidth > box.clientWidth + 1).length"""
                )
                assert cut == 0, f"a table of the {name} page is cut off at {width} px"

    # The wallet job: one result column per platform, in words, with its detail under it;
    # the "pass of the deleted card" column, empty in every row, is not shown.
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(live_server.url + pages["wallet job"])
    headers = page.locator("table.items thead th").all_inner_texts()
    assert "Apple result" in headers and "Google result" in headers
    assert not [h for h in headers if "detail" in h.lower() or "deleted card" in h.lower()]
    first = page.locator("table.items tbody tr").first
    assert "Synced" in first.inner_text() and "Failed" in first.inner_text()
    assert in_view(page, first.locator("td.reason"))
    assert violations == []


def test_phone_first_screen_charts_toasts_and_cancel_dialog(
    transactional_db, live_server, browser, company, owner
):
    email, _wallet, running = long_data(company, owner)
    page, violations = open_page(browser, live_server, "owner", PHONE)
    # The first job is on the first screen, and the running one comes first.
    first_row = page.locator("table.jobs tbody tr").first
    box = page.locator("section.jobs-section").first.locator("tbody tr:visible").first
    top = page.evaluate(
        "() => Math.min(...[...document.querySelectorAll('table.jobs tbody tr')]"
        ".map((tr) => tr.getBoundingClientRect().top))"
    )
    assert top < PHONE["height"], f"the first job starts at {top} px"
    assert first_row.count() and box.count()
    email_rows = page.locator('section[data-kind="email"] tbody tr')
    tops = page.evaluate(
        """() => [...document.querySelectorAll('section[data-kind=email] tbody tr')].map(
            (tr) => [tr.dataset.job, tr.getBoundingClientRect().top])"""
    )
    topmost = min(tops, key=lambda pair: pair[1])[0]
    assert topmost == str(running.pk), tops
    assert email_rows.count() == 2

    # The cancel dialog opens with the safe choice focused.
    page.locator(f'tr[data-job="{running.pk}"]').get_by_role(
        "link", name=f"Cancel job {running.pk}"
    ).click()
    assert page.evaluate("document.activeElement.textContent.trim()") == "Keep running"
    page.keyboard.press("Enter")
    assert page.locator("dialog#cancel-dialog").is_hidden()
    assert BulkEmailJob.objects.get(pk=running.pk).status == Status.PROCESSING

    # A toast lets clicks through to the row under it and closes by itself.
    page.get_by_role("button", name=re.compile(r"^Retry \d+ failed")).first.click()
    toast = page.locator("#toasts .toast")
    toast.first.wait_for(timeout=5000)
    assert (
        page.evaluate(
            "() => getComputedStyle(document.querySelector('#toasts .toast')).pointerEvents"
        )
        == "none"
    )
    toast.first.wait_for(state="detached", timeout=15000)

    # Charts: their labels are at least ~11 px on screen at 390 px.
    page.goto(live_server.url + reverse("bulkjobs:activity"))
    assert fits_the_viewport(page)
    smallest = page.evaluate(
        """() => Math.min(...[...document.querySelectorAll('.activity-chart svg text')].map(
            (t) => parseFloat(getComputedStyle(t).fontSize) * t.getScreenCTM().a))"""
    )
    assert smallest >= 10.5, f"chart labels are {smallest:.1f} px"
    assert email.pk and violations == []


def test_wallet_job_page_follows_the_poll(
    transactional_db, live_server, settings, browser, company, owner
):
    settings.BULKJOBS_DASHBOARD_POLL_SECONDS = 0.4
    cards = make_cards(company, 3, prefix="Wally")
    wallet = make_wallet_job(company, cards, owner, status=Status.PROCESSING)
    page, violations = open_page(browser, live_server, "owner", DESKTOP)
    page.goto(live_server.url + reverse("bulkjobs:job_detail", args=["wallet", wallet.pk]))
    page.evaluate("window.__noReload = true")
    assert page.title().startswith(f"0% · Wallet sync job #{wallet.pk}")
    headers = page.locator("table.items thead th").all_inner_texts()
    assert "Apple result" not in headers  # nothing synced yet: the column is left out
    # A batch as the wallet processor writes it: each item's platform results, then the
    # job's counters.
    BulkWalletApiJobItem.objects.filter(job=wallet).update(
        status=Status.COMPLETED,
        attempts=1,
        apple_result=PlatformResult.SYNCED,
        apple_detail="Pass updated; 1 device(s) notified.",
        google_result=PlatformResult.SKIPPED,
    )
    BulkWalletApiJob.objects.filter(pk=wallet.pk).update(status=Status.COMPLETED, succeeded_items=3)
    page.wait_for_function(
        "() => document.querySelector('[data-status-label]').innerText === 'Completed'",
        timeout=15000,
    )
    page.wait_for_function(
        "id => document.title.startsWith(`Completed · Wallet sync job #${id}`)",
        arg=wallet.pk,
        timeout=5000,
    )
    first = page.locator("table.items tbody tr").first
    assert "Synced" in first.inner_text() and "Pass updated; 1 device notified." in (
        first.inner_text()
    )
    assert "Skipped (not configured)" in first.inner_text()
    assert page.evaluate("window.__noReload") is True
    assert violations == []
