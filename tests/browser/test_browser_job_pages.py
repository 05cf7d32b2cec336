"""The job pages in a real browser (Debian's chromium through Playwright), at a desktop
width (1366 px) and a phone's (390 px): a job page that follows its job to the end
without a reload, the segmented bar, cancel with a visible result, the layout fitting
the screen with its actions in view, and a member's styled 403 page.
"""

import time

from django.urls import reverse

from bulkjobs.models import Status
from emails.models import BulkEmailJob, BulkEmailJobItem
from tests.conftest import make_cards, make_email_job
from tests.web.conftest import fail_items

from .test_browser import processor_running, sign_in, watch_csp

DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}


def open_page(browser, live_server, username, viewport):
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    violations = watch_csp(page)
    sign_in(page, live_server.url, username)
    page.wait_for_url(live_server.url + reverse("bulkjobs:dashboard"))
    return page, violations


def fits_the_viewport(page):
    """Nothing sticks out sideways: the document is no wider than the window."""
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def in_view(page, locator):
    """Visible and horizontally inside the window (not cut off or scrolled away)."""
    box = locator.bounding_box()
    width = page.evaluate("window.innerWidth")
    return (
        locator.is_visible()
        and box is not None
        and box["x"] >= 0
        and box["x"] + box["width"] <= width
    )


def test_job_page_follows_its_job_to_the_end_without_reload(
    transactional_db,
    live_server,
    settings,
    browser,
    smtp_sink,
    company,
    owner,
    tmp_path,
):
    settings.BULKJOBS_DASHBOARD_POLL_SECONDS = 0.4
    smtp_sink.delay = 0.05
    job = make_email_job(company, cards=make_cards(company, 12), created_by=owner, subject="Launch")
    page, violations = open_page(browser, live_server, "owner", DESKTOP)
    page.goto(live_server.url + reverse("bulkjobs:job_detail", args=["email", job.pk]))
    page.evaluate("window.__noReload = true")
    badge = page.locator("[data-status-label]")
    assert badge.inner_text() == "Pending"
    assert page.get_by_role("link", name="Cancel job").is_visible()
    polls = []
    page.on("response", lambda r: polls.append(time.monotonic()) if "job.json" in r.url else None)

    with processor_running(smtp_sink, tmp_path):
        page.wait_for_function(
            "() => document.querySelector('[data-status-label]').innerText === 'Completed'",
            timeout=60000,
        )
    assert page.evaluate("window.__noReload") is True
    # The page says it is over: status, full bar, counts, no Cancel button, and a toast.
    assert page.get_by_role("link", name="Cancel job").count() == 0
    assert page.locator("rect[data-seg=succeeded]").get_attribute("width") == "100"
    assert page.locator("[data-filter=completed] .count").inner_text() == "12"
    toast = page.locator("#toasts .toast")
    toast.wait_for(timeout=5000)
    assert f"Email job #{job.pk}, 'Launch': Completed." in toast.inner_text()
    assert page.locator("#toasts").get_attribute("role") == "status"
    # Finished jobs do not change by themselves: the page stops asking.
    finished_at = time.monotonic()
    page.wait_for_timeout(1500)
    assert not [t for t in polls if t > finished_at + 0.5], "kept polling after the job finished"
    assert violations == []


def test_segmented_bar_cancel_result_and_desktop_layout(
    transactional_db,
    live_server,
    browser,
    company,
    owner,
):
    cards = make_cards(company, 10)
    # A long subject and reason must wrap, not widen the table.
    done = fail_items(
        make_email_job(company, cards=cards, created_by=owner, subject="Quarterly " * 12), 3
    )
    BulkEmailJob.objects.filter(pk=done.pk).update(reason="Rejected at RCPT: 550 " + "x" * 300)
    running = make_email_job(company, cards=cards, created_by=owner, subject="Trade fair follow-up")
    # 3 sent, 1 failed, 6 to go: items and counters agree (cancel recounts from the items).
    items = list(BulkEmailJobItem.objects.filter(job=running).order_by("id"))
    BulkEmailJobItem.objects.filter(pk__in=[i.pk for i in items[:3]]).update(
        status=Status.COMPLETED
    )
    BulkEmailJobItem.objects.filter(pk=items[3].pk).update(status=Status.FAILED)
    BulkEmailJob.objects.filter(pk=running.pk).update(
        status=Status.PROCESSING, succeeded_items=3, failed_items=1
    )
    page, violations = open_page(browser, live_server, "owner", DESKTOP)
    for width in (1366, 1280):
        page.set_viewport_size({"width": width, "height": 900})
        assert fits_the_viewport(page), f"wider than {width} px"
        row = page.locator(f'tr[data-job="{running.pk}"]')
        assert in_view(page, row.get_by_role("link", name=f"Cancel job {running.pk}"))
        retry = page.locator(f'tr[data-job="{done.pk}"]').get_by_role("button", name="Retry")
        assert in_view(page, retry)

    # The segmented bar: 3 sent, 1 failed, 6 to go, drawn and said.
    bar = row.locator("[role=progressbar]")
    widths = {
        seg: row.locator(f"rect[data-seg={seg}]").get_attribute("width")
        for seg in ("succeeded", "failed", "cancelled", "remaining")
    }
    assert widths == {"succeeded": "30", "failed": "10", "cancelled": "0", "remaining": "60"}
    assert bar.get_attribute("aria-valuetext") == (
        "3 sent, 1 failed, 0 cancelled, 6 not yet sent (of 10 emails)"
    )
    legend = row.locator(".legend").inner_text()
    assert "3 sent" in legend and "1 failed" in legend and "6 not yet sent" in legend
    colours = page.evaluate(
        """() => ["succeeded", "failed", "remaining"].map(
            (s) => getComputedStyle(document.querySelector(`rect[data-seg=${s}]`)).fill)"""
    )
    assert len(set(colours)) == 3, colours
    badge_colours = page.evaluate(
        """(ids) => ids.map((id) => getComputedStyle(
            document.querySelector(`tr[data-job='${id}'] .badge`)).backgroundColor)""",
        [done.pk, running.pk],
    )
    assert badge_colours[0] != badge_colours[1]

    # Cancel: the dialog names the job and what stops; the result is shown in a toast.
    row.get_by_role("link", name=f"Cancel job {running.pk}").click()
    dialog = page.locator("dialog#cancel-dialog")
    assert (
        f"Cancel email job #{running.pk}, 'Trade fair follow-up': 6 emails not yet sent?"
        in dialog.inner_text()
    )
    dialog.get_by_role("button", name="Cancel job").click()
    toast = page.locator("#toasts .toast.success")
    toast.wait_for(timeout=5000)
    assert in_view(page, toast)
    assert "cancelled after 3 sent; 6 emails will not be sent" in toast.inner_text()
    page.wait_for_function(
        "id => document.querySelector(`tr[data-job='${id}'] .badge`).innerText"
        " === 'Cancelled after 3 sent'",
        arg=running.pk,
        timeout=10000,
    )
    assert row.get_by_role("link", name=f"Cancel job {running.pk}").count() == 0
    # Only one toast: the cancel's result, not a second "job finished" for the same news.
    assert page.locator("#toasts .toast").count() == 1
    assert violations == []


def test_phone_layout_shows_status_progress_and_actions(
    transactional_db,
    live_server,
    browser,
    company,
    owner,
):
    cards = make_cards(company, 4)
    job = make_email_job(company, cards=cards, created_by=owner, subject="On the road")
    failed = fail_items(
        make_email_job(company, cards=cards, created_by=owner, subject="Bounced"), 2
    )
    page, violations = open_page(browser, live_server, "owner", PHONE)
    assert fits_the_viewport(page)
    row = page.locator(f'tr[data-job="{job.pk}"]')
    for locator in (
        row.locator(".badge"),
        row.locator("[role=progressbar]"),
        row.locator(".legend"),
        row.get_by_role("link", name=f"Cancel job {job.pk}"),
    ):
        locator.scroll_into_view_if_needed()
        assert in_view(page, locator)
    retry = page.locator(f'tr[data-job="{failed.pk}"]').get_by_role("button", name="Retry")
    retry.scroll_into_view_if_needed()
    assert in_view(page, retry)
    # The job page on a phone: status, bar and actions in view, items as cards.
    page.goto(live_server.url + reverse("bulkjobs:job_detail", args=["email", job.pk]))
    assert fits_the_viewport(page)
    for locator in (
        page.locator("[data-status-label]"),
        page.locator("[role=progressbar]"),
        page.get_by_role("link", name="Cancel job"),
    ):
        assert in_view(page, locator)
    assert violations == []


def test_member_sees_a_styled_403_and_no_start_links(
    transactional_db,
    live_server,
    browser,
    company,
    owner,
    member,
    card,
):
    make_email_job(company, cards=[card], created_by=owner)
    page, violations = open_page(browser, live_server, "member", DESKTOP)
    nav = page.get_by_role("navigation", name="Main")
    assert nav.get_by_role("link", name="Background jobs").is_visible()
    assert nav.get_by_role("link", name="Send by email").count() == 0
    assert page.get_by_role("link", name="Send cards by email").count() == 0
    response = page.goto(live_server.url + reverse("emails:send"))
    assert response.status == 403
    heading = page.get_by_role("heading", name="This is for company admins")
    assert heading.is_visible()
    assert "owner" in page.locator("main").inner_text()
    # Styled: the site's stylesheet applies (the panel has its background and border).
    assert (
        page.evaluate("getComputedStyle(document.querySelector('.panel')).backgroundColor")
        == "rgb(255, 255, 255)"
    )
    assert page.get_by_role("link", name="Back to background jobs").is_visible()
    assert violations == []


def test_browser_notifications_are_opt_in(transactional_db, live_server, browser, company, owner):
    make_email_job(company, cards=make_cards(company, 1), created_by=owner)
    context = browser.new_context(viewport=DESKTOP)
    context.grant_permissions(["notifications"], origin=live_server.url)
    page = context.new_page()
    sign_in(page, live_server.url, "owner")
    page.wait_for_url(live_server.url + reverse("bulkjobs:dashboard"))
    button = page.get_by_role("button", name="Notify me when jobs finish")
    assert button.get_attribute("aria-pressed") == "false"
    assert page.evaluate("localStorage.getItem('bulkjobs-notify')") is None
    button.click()
    on = page.get_by_role("button", name="Notifications on")
    on.wait_for(timeout=5000)
    assert on.get_attribute("aria-pressed") == "true"
    assert page.evaluate("localStorage.getItem('bulkjobs-notify')") == "1"
    assert "browser notification" in page.locator("#toasts").inner_text()
    on.click()
    page.get_by_role("button", name="Notify me when jobs finish").wait_for(timeout=5000)
    assert page.evaluate("localStorage.getItem('bulkjobs-notify')") is None
    context.close()


def test_a_german_companys_job_pages_speak_german_in_the_browser(
    transactional_db, live_server, browser
):
    from cards.models import Company, Membership
    from tests.conftest import make_user

    company = Company.objects.create(
        name="Beispiel GmbH", slug="beispiel", language="de", time_zone="Europe/Berlin"
    )
    make_user("chefin", company, Membership.Role.ADMIN)
    running = make_email_job(company, cards=make_cards(company, 4), subject="Messe")
    BulkEmailJob.objects.filter(pk=running.pk).update(status=Status.PROCESSING)
    page, violations = open_page(browser, live_server, "chefin", DESKTOP)
    assert page.locator("h1").inner_text() == "Hintergrundaufträge"
    assert page.evaluate("document.documentElement.lang") == "de"

    # The dialog, its buttons and the script's toast are German too.
    page.locator(f'tr[data-job="{running.pk}"]').get_by_role(
        "link", name=f"Abbrechen Auftrag {running.pk}"
    ).click()
    dialog = page.locator("dialog#cancel-dialog")
    assert f"E-Mail-Auftrag #{running.pk}, 'Messe' abbrechen: 4 E-Mails noch nicht gesendet?" in (
        dialog.inner_text()
    )
    dialog.get_by_role("button", name="Auftrag abbrechen").click()
    toast = page.locator("#toasts .toast.success")
    toast.wait_for(timeout=5000)
    assert "abgebrochen (0 gesendet); 4 E-Mails werden nicht mehr gesendet." in toast.inner_text()
    assert toast.get_by_role("button").get_attribute("aria-label") == "Schließen"
    assert violations == []
