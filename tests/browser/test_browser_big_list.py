"""A big pasted list in a real browser: chromium's multipart/form-data is what the send page
renames on its way into Django's parser (emails/uploads.py), so 100,000 pasted addresses,
over Django's 2.5 MB limit on form fields, make a job, and a list over the most a job
takes is refused on the form, which keeps the rest."""

from django.urls import reverse

from emails.models import BulkEmailJob
from tests.browser.test_browser import sign_in


def addresses(count):
    return "".join(f"recipient{n}@example.com,Recipient {n}\n" for n in range(count))


def fill_the_form(page, card, text):
    page.get_by_label("Only the cards I select").check()
    page.locator(f'input[name="cards"][value="{card.pk}"]').check()
    page.get_by_label("One card to a list of addresses (paste or upload)").check()
    # Typing 4 MB would take minutes; the value is set as a paste sets it.
    page.locator('textarea[name="recipients_text"]').evaluate(
        "(area, text) => { area.value = text; }", text
    )
    page.get_by_label("The recipients on this list agreed to receive my card by email.").check()
    page.get_by_label("Subject").fill("Our new cards")
    page.get_by_label("Message").fill("Hello from Acme")


def test_100000_pasted_addresses_make_a_job(
    transactional_db, live_server, browser, company, owner, card
):
    page = browser.new_page()
    sign_in(page, live_server.url, "owner")
    page.wait_for_url(live_server.url + reverse("bulkjobs:dashboard"))
    page.goto(live_server.url + reverse("emails:send"))
    fill_the_form(page, card, addresses(100_000))
    page.get_by_role("button", name="Start sending").click()
    # Above the review threshold: reviewed, then confirmed.
    page.wait_for_url("**/emails/send/review/*/", timeout=60_000)
    page.get_by_role("button", name="Confirm: send to 100000 recipients").click()
    page.wait_for_url("**/background-jobs/email/*/", timeout=60_000)
    job = BulkEmailJob.objects.get()
    assert page.url.endswith(reverse("bulkjobs:job_detail", args=["email", job.pk]))
    assert job.total_items == job.items.count() == 100_000
    page.close()


def test_a_paste_over_the_limit_keeps_the_form(
    transactional_db, live_server, browser, company, owner, card, settings
):
    settings.EMAIL_MAX_RECIPIENTS = 100  # lists of up to 10,000 bytes
    page = browser.new_page()
    sign_in(page, live_server.url, "owner")
    page.wait_for_url(live_server.url + reverse("bulkjobs:dashboard"))
    page.goto(live_server.url + reverse("emails:send"))
    fill_the_form(page, card, addresses(400))
    page.get_by_role("button", name="Start sending").click()
    page.wait_for_load_state()
    assert (
        page.locator("#id_recipients_text_error")
        .get_by_text("The pasted list is larger than 0.01 MB")
        .is_visible()
    )
    assert page.locator("#error-summary").get_by_text("The pasted list is larger").is_visible()
    assert page.get_by_label("Subject").input_value() == "Our new cards"
    assert page.get_by_label("Message").input_value() == "Hello from Acme"
    assert page.locator(f'input[name="cards"][value="{card.pk}"]').is_checked()
    assert not BulkEmailJob.objects.exists()
    page.close()
