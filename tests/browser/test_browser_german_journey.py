"""A German company's admin in a real browser (Debian's chromium through Playwright): a
small job created behind a long one says in German what it waits for, the long job is
paused and resumed from its page in German, and the pages show none of the project's
English words along the way; times name the company's zone."""

import re
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.urls import reverse

from bulkjobs import engine
from bulkjobs.kinds import get_kind
from bulkjobs.models import Status
from cards.models import Company
from emails.models import BulkEmailJob
from tests.conftest import make_cards, make_email_job

from .test_browser import sign_in, watch_csp

DESKTOP = {"width": 1366, "height": 900}
#: Words of the project's English pages that a German page must not show.
ENGLISH = (
    "Behind",
    "Waiting",
    "Paused by",
    "Resumed by",
    "Pending",
    "Processing",
    "Cancel job",
    "Pause job",
    "Time left",
    "emails",
    " sent",
)


def assert_german(text, where):
    found = [word for word in ENGLISH if word in text]
    assert not found, f"English on {where}: {found}"


def test_a_german_admin_reads_the_queue_and_pauses_and_resumes_in_german(
    transactional_db, live_server, browser, company, owner, database_time
):
    Company.objects.filter(pk=company.pk).update(language="de", time_zone="Europe/Berlin")
    get_user_model().objects.filter(pk=owner.pk).update(first_name="Anna", last_name="Schmidt")
    email = get_kind("email")
    long_job = make_email_job(
        company, cards=make_cards(company, 60), created_by=owner, subject="Newsletter Dezember"
    )
    engine.run_once(email)  # its first batch: 50 of 60
    small = make_email_job(
        company, cards=make_cards(company, 1, prefix="Termin"), created_by=owner, subject="Dringend"
    )
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    violations = watch_csp(page)
    sign_in(page, live_server.url, "owner")
    page.wait_for_url(live_server.url + reverse("bulkjobs:dashboard"))

    # The small job says, in German, behind which job it waits and until when.
    waiting = page.locator(f'tr[data-job="{small.pk}"] [data-waiting]').inner_text()
    assert re.match(rf"Hinter #{long_job.pk} „Newsletter Dezember“: ", waiting), waiting
    assert re.search(r"\d\d:\d\d CET\)\.$", waiting), waiting
    assert_german(page.locator("main").inner_text(), "the dashboard")

    # Pause the long job from its page: asked first, then said who and when, in German.
    detail = reverse("bulkjobs:job_detail", args=["email", long_job.pk])
    page.goto(live_server.url + detail)
    page.get_by_role("link", name="Auftrag pausieren").click()
    page.wait_for_url(re.compile(r".*/pause/\?next=.*"))
    assert_german(page.locator("main").inner_text(), "the pause confirmation")
    page.get_by_role("button", name="Auftrag pausieren").click()
    page.wait_for_url(live_server.url + detail)
    assert page.locator("h1 .badge").inner_text() == "Pausiert"
    said = page.locator("[data-last-action]").inner_text()
    assert re.fullmatch(r"Pausiert von Anna Schmidt um \d\d:\d\d CET", said), said
    assert_german(page.locator("main").inner_text(), "the paused job's page")

    # While it is paused the small job goes ahead; the long one sends nothing.
    summary = engine.run_once(email)
    assert summary.items_succeeded == 1
    assert BulkEmailJob.objects.get(pk=small.pk).status == Status.COMPLETED

    # Resume: the job goes on where it stopped, and its history says both, in German.
    page.get_by_role("link", name="Auftrag fortsetzen").click()
    page.wait_for_url(re.compile(r".*/resume/\?next=.*"))
    page.get_by_role("button", name="Auftrag fortsetzen").click()
    page.wait_for_url(live_server.url + detail)
    history = page.locator("[data-history] li").all_inner_texts()
    assert [entry.split(" um ")[0] for entry in history] == [
        "Fortgesetzt von Anna Schmidt",
        "Pausiert von Anna Schmidt",
    ]
    assert_german(page.locator("main").inner_text(), "the resumed job's page")
    database_time.shift(timedelta(minutes=1))  # the company's pace (50 a minute) is spent
    assert engine.run_once(email).items_succeeded == 10
    assert BulkEmailJob.objects.get(pk=long_job.pk).status == Status.COMPLETED
    assert violations == []
    context.close()
