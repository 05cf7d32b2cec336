"""The dashboard in a real browser: Debian's chromium driven by Playwright.

Signs in through the login form, watches a job's progress bar advance while
`manage.py process_email_jobs --loop` sends to a real SMTP sink in another process, then
cancels a job through the confirmation dialog and sees it become cancelled, all
without reloading the page.
"""

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from django.db import connection
from django.urls import reverse

from bulkjobs.models import Status
from emails.models import BulkEmailJob
from tests.conftest import make_cards, make_email_job

ROOT = Path(__file__).resolve().parents[2]


def database_url():
    """DATABASE_URL of the test database, so a subprocess works on the same data."""
    s = connection.settings_dict
    engine = s["ENGINE"].rsplit(".", 1)[-1]
    if engine == "sqlite3":
        return f"sqlite:///{s['NAME']}"
    scheme = {"postgresql": "postgres", "mysql": "mysql"}[engine]
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"{scheme}://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or ''}/{s['NAME']}"


@contextmanager
def processor_running(smtp_sink, workdir):
    """`process_email_jobs --loop` in its own process, sending to the loopback sink."""
    env = dict(
        os.environ,
        DATABASE_URL=database_url(),
        EMAIL_URL=f"smtp://127.0.0.1:{smtp_sink.port}",
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        LOG_FILE=str(workdir / "processor.log"),
    )
    with open(workdir / "processor.out", "w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "process_email_jobs",
                "--loop",
                "--batch-size",
                "2",
                "--sleep",
                "0.2",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def watch_csp(page):
    """Start collecting the page's Content-Security-Policy violations; returns them (a list).

    Chromium reports each one on the console (kept across navigations) and as a
    `securitypolicyviolation` event (collected per document by an init script, which
    Playwright injects outside the page's policy).
    """
    reports = []
    page.on(
        "console",
        lambda message: (
            reports.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    page.add_init_script(
        """document.addEventListener("securitypolicyviolation", (event) => {
            console.error(`Content Security Policy: ${event.violatedDirective} blocked ${event.blockedURI || "inline"}`);
        });"""
    )
    return reports


def sign_in(page, base_url, username):
    page.goto(base_url + reverse("login"))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("pw-" + username)
    page.get_by_role("button", name="Sign in").click()


def progress_of(page, job):
    bar = page.locator(f'tr[data-job="{job.pk}"] [role=progressbar]')
    return int(bar.get_attribute("aria-valuenow"))


def status_of(page, job):
    return page.locator(f'tr[data-job="{job.pk}"] [data-col=status]').inner_text().strip()


def test_progress_advances_and_cancel_without_reload(
    transactional_db, live_server, settings, browser, smtp_sink, company, owner, tmp_path
):
    settings.BULKJOBS_DASHBOARD_POLL_SECONDS = 0.5
    smtp_sink.delay = 0.1  # ~0.1 s per email: a 40-item job takes a few seconds
    cards = make_cards(company, 40)
    first = make_email_job(company, cards=cards, created_by=owner, subject="First")

    page = browser.new_page()
    csp_violations = watch_csp(page)
    sign_in(page, live_server.url, "owner")
    page.wait_for_url(live_server.url + reverse("bulkjobs:dashboard"))
    assert page.title().startswith("Background jobs")
    assert progress_of(page, first) == 0
    # Survives only if the page is never reloaded.
    page.evaluate("window.__noReload = true")

    seen = set()
    with processor_running(smtp_sink, tmp_path):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and status_of(page, first) != "Completed":
            seen.add(progress_of(page, first))
            time.sleep(0.1)
        assert status_of(page, first) == "Completed"
        assert progress_of(page, first) == 100
        # The bar moved through intermediate values, not straight from 0 to 100.
        assert len({v for v in seen if 0 < v < 100}) >= 2, seen
        assert "40 sent" in page.locator(f'tr[data-job="{first.pk}"] .legend').inner_text()
        # The user watched it run: a toast says it finished.
        toast = page.locator("#toasts .toast", has_text=f"Email job #{first.pk}, 'First'")
        toast.wait_for(timeout=5000)
        assert "Completed." in toast.inner_text()

        # A new job appears at the top of the table by itself, and gets cancelled.
        second = make_email_job(
            company,
            cards=make_cards(company, 400, prefix="Many"),
            created_by=owner,
            subject="Second",
        )
        row = page.locator(f'tr[data-job="{second.pk}"]')
        row.wait_for(timeout=15000)
        page.wait_for_function(
            "id => +document.querySelector(`tr[data-job='${id}'] [role=progressbar]`)"
            ".getAttribute('aria-valuenow') > 0",
            arg=second.pk,
            timeout=30000,
        )
        row.get_by_role("link", name=f"Cancel job {second.pk}").click()
        dialog = page.locator("dialog#cancel-dialog")
        assert dialog.is_visible()
        assert f"Cancel email job #{second.pk}, 'Second':" in dialog.inner_text()
        dialog.get_by_role("button", name="Cancel job").click()
        page.wait_for_function(
            "id => document.querySelector(`tr[data-job='${id}'] [data-col=status]`)"
            ".innerText.trim().startsWith('Cancelled after')",
            arg=second.pk,
            timeout=15000,
        )
    assert page.evaluate("window.__noReload") is True
    assert not row.get_by_role("link", name=f"Cancel job {second.pk}").count()
    second.refresh_from_db()
    assert second.status == Status.CANCELLED
    assert 0 < second.succeeded_items < 400
    assert second.cancelled_items == 400 - second.succeeded_items - second.failed_items
    assert BulkEmailJob.objects.get(pk=first.pk).succeeded_items == 40
    assert csp_violations == []


def test_polls_only_while_visible_and_gets_304_when_nothing_changed(
    transactional_db, live_server, settings, browser, company, owner, member
):
    settings.BULKJOBS_DASHBOARD_POLL_SECONDS = 0.3
    job = make_email_job(company, cards=make_cards(company, 3), created_by=owner)
    context = browser.new_context()
    page = context.new_page()
    csp_violations = watch_csp(page)
    # Listening from the start: the first poll may come before sign_in() returns.
    polls = []
    page.on("response", lambda r: polls.append(r.status) if "jobs.json" in r.url else None)
    sign_in(page, live_server.url, "member")
    page.wait_for_url(live_server.url + reverse("bulkjobs:dashboard"))
    # A member sees the job but no actions.
    row = page.locator(f'tr[data-job="{job.pk}"]')
    assert row.get_by_role("link", name=f"Cancel job {job.pk}").count() == 0
    page.wait_for_timeout(1500)
    # The first poll fetches the rows (200); the unchanged ones after it are 304s.
    assert 200 in polls and polls.count(304) >= 2, polls

    page.evaluate(
        """() => {
            Object.defineProperty(document, "visibilityState", {value: "hidden", configurable: true});
            document.dispatchEvent(new Event("visibilitychange"));
        }"""
    )
    page.wait_for_timeout(300)
    polls.clear()
    page.wait_for_timeout(1500)
    assert polls == [], "polled while the tab was hidden"

    # Back to visible: an immediate poll, and a change made meanwhile shows up in place.
    BulkEmailJob.objects.filter(pk=job.pk).update(reason="Checked by the operator")
    make_email_job(company, cards=make_cards(company, 1, prefix="Late"), created_by=owner)
    page.evaluate(
        """() => {
            Object.defineProperty(document, "visibilityState", {value: "visible", configurable: true});
            document.dispatchEvent(new Event("visibilitychange"));
        }"""
    )
    page.wait_for_function(
        "() => document.querySelectorAll('section[data-kind=email] tbody tr').length === 2",
        timeout=5000,
    )
    assert 200 in polls
    assert "Checked by the operator" in row.locator("[data-col=details]").inner_text()
    assert csp_violations == []
    context.close()


def test_pages_pass_the_content_security_policy_that_blocks_inline_code(
    transactional_db, live_server, browser, company, owner, card
):
    job = make_email_job(company, cards=[card], created_by=owner)
    page = browser.new_page()
    csp_violations = watch_csp(page)
    sign_in(page, live_server.url, "owner")
    page.wait_for_url(live_server.url + reverse("bulkjobs:dashboard"))
    for url in [
        reverse("bulkjobs:job_detail", args=["email", job.pk]),
        reverse("cards:list"),
        reverse("emails:send"),
        reverse("wallet:sync"),
        card.get_absolute_url(),
    ]:
        page.goto(live_server.url + url)
        assert page.locator("main").count() == 1
    assert csp_violations == []

    # The policy is really in force, and the watcher sees a breach: an injected inline
    # script does not run, an inline style attribute is not applied.
    page.evaluate(
        """() => {
            const script = document.createElement("script");
            script.textContent = "window.__injected = true";
            document.body.append(script);
            document.body.insertAdjacentHTML("beforeend", '<p id="styled" style="color: red">x</p>');
        }"""
    )
    assert page.evaluate("window.__injected") is None
    assert page.evaluate("getComputedStyle(document.getElementById('styled')).color") != (
        "rgb(255, 0, 0)"
    )
    # Console messages reach Python while Playwright waits; give them up to 5 s to arrive.
    for _ in range(50):
        if len(csp_violations) >= 2:
            break
        page.wait_for_timeout(100)
    assert any("script-src" in report for report in csp_violations), csp_violations
    assert any("style-src" in report for report in csp_violations), csp_violations
    page.close()
