"""The send page in a real browser (Debian chromium): a German Excel export reviewed,
tested and confirmed; the email shown exactly as sent under its own policy; every error
of a submit at once with the focus on their summary; the list fields only for a list."""

from django.urls import reverse

from emails.models import BulkEmailJob, EmailDraft
from tests.browser.test_browser import sign_in, watch_csp

#: The card email's background (templates/emails/card_email.html, #f4f5f7).
EMAIL_BACKGROUND = "rgb(244, 245, 247)"


def german_excel_csv(rows, duplicates):
    """What German Excel saves as "CSV (Trennzeichen-getrennt)": Windows-1252, `;`, CRLF."""
    lines = ["E-Mail;Name"]
    lines += [f"kunde{n}@firma.de;Müller, Jürgen {n}" for n in range(rows - duplicates)]
    lines += [f"KUNDE{n}@firma.de;Müller, Jürgen {n}" for n in range(duplicates)]
    return ("\r\n".join(lines) + "\r\n").encode("cp1252")


def open_send_page(browser, live_server, owner):
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    reports = watch_csp(page)
    sign_in(page, live_server.url, owner.username)
    page.wait_for_url(live_server.url + reverse("bulkjobs:dashboard"))
    page.goto(live_server.url + reverse("emails:send"))
    return page, reports


def test_a_german_excel_export_is_reviewed_tested_and_confirmed(
    transactional_db, live_server, browser, company, owner, card, smtp_sink
):
    owner.email = "olga@acme.example"
    owner.save()
    page, csp_reports = open_send_page(browser, live_server, owner)
    page.get_by_label("Only the cards I select").check()
    page.locator(f'input[name="cards"][value="{card.pk}"]').check()
    page.get_by_label("One card to a list of addresses (paste or upload)").check()
    page.get_by_label("…or upload a CSV file").set_input_files(
        files=[
            {
                "name": "kunden.csv",
                "mimeType": "text/csv",
                "buffer": german_excel_csv(5_000, duplicates=3),
            }
        ]
    )
    page.get_by_label("The recipients on this list agreed to receive my card by email.").check()
    page.get_by_label("Subject").fill("Unsere neuen Karten")
    page.get_by_role("button", name="Start sending").click()

    # 5,000 rows: above the threshold, so reviewed first; nothing queued yet.
    page.wait_for_url("**/emails/send/review/*/")
    assert not BulkEmailJob.objects.exists()
    assert page.locator("#review-recipients").inner_text() == "4997 addresses"
    assert page.locator("#review-duplicates").inner_text().startswith("3 duplicates dropped")
    assert page.get_by_text("Unsere neuen Karten").is_visible()

    # The email as sent, under its own policy: its inline styles apply, nothing is blocked.
    frame = page.frame_locator("iframe")
    background = frame.locator("body").evaluate("body => getComputedStyle(body).backgroundColor")
    assert background == EMAIL_BACKGROUND
    assert frame.get_by_text(card.full_name).first.is_visible()
    assert csp_reports == []

    page.get_by_role("button", name="Send a test to me").click()
    page.wait_for_load_state()
    assert page.get_by_text("A test email was sent to olga@acme.example").is_visible()
    [test] = smtp_sink.messages
    assert test.rcpt_tos == ["olga@acme.example"]
    assert test.message["Subject"] == "Unsere neuen Karten"
    assert not BulkEmailJob.objects.exists()

    page.get_by_role("button", name="Confirm: send to 4997 recipients").click()
    page.wait_for_url("**/background-jobs/email/*/")
    job = BulkEmailJob.objects.get()
    assert job.total_items == job.items.count() == 4_997
    assert job.items.filter(
        recipient_email="kunde4996@firma.de", recipient_name="Müller, Jürgen 4996"
    ).exists()
    assert not EmailDraft.objects.exists()
    assert csp_reports == []
    page.close()


def test_one_submit_shows_every_error_with_the_focus_on_their_summary(
    transactional_db, live_server, browser, company, owner, card
):
    page, csp_reports = open_send_page(browser, live_server, owner)
    page.get_by_label("Only the cards I select").check()
    page.get_by_label("One card to a list of addresses (paste or upload)").check()
    page.get_by_label("Recipient list").fill(
        "ok@example.com\nhans@@firma.de\nErika Mustermann\n<erika@firma.de\nann@firma.debob@firma.de"
    )
    # No card, no subject.
    page.get_by_role("button", name="Start sending").click()
    page.wait_for_load_state()

    summary = page.locator("#error-summary")
    assert page.evaluate("document.activeElement.id") == "error-summary"
    text = summary.inner_text()
    assert "Selected cards: Choose at least one card." in text
    assert "Subject: This field is required." in text
    assert "4 lines of the list have problems" in text
    problems = page.locator("#bad-lines li").all_inner_texts()
    assert problems[0].startswith("Line 2: two @ signs")
    assert problems[1].startswith("Line 3: a name without an email address")
    assert problems[2].startswith("Line 4: an unclosed bracket")
    assert problems[3].startswith("Line 5: two addresses without a separator")
    # The summary's links lead to the fields.
    summary.get_by_role("link", name="Subject: This field is required.").click()
    assert page.evaluate("document.activeElement.id") == "id_subject"
    assert not BulkEmailJob.objects.exists()
    assert csp_reports == []
    page.close()


def test_the_list_fields_show_for_a_list_only(
    transactional_db, live_server, browser, company, owner, card
):
    page, _reports = open_send_page(browser, live_server, owner)
    page.get_by_label("Each card to its holder's email address").check()
    assert not page.get_by_label("Recipient list").is_visible()
    assert not page.get_by_label("…or upload a CSV file").is_visible()
    page.get_by_label("One card to a list of addresses (paste or upload)").check()
    assert page.get_by_label("Recipient list").is_visible()
    assert page.get_by_label("…or upload a CSV file").is_visible()
    page.close()


def test_the_preview_is_scrolled_into_view_with_the_focus(
    transactional_db, live_server, browser, company, owner, card
):
    page, csp_reports = open_send_page(browser, live_server, owner)
    page.get_by_label("Only the cards I select").check()
    page.locator(f'input[name="cards"][value="{card.pk}"]').check()
    page.get_by_label("Subject").fill("Hello")
    page.get_by_role("button", name="Preview").click()
    page.wait_for_load_state()
    assert page.evaluate("document.activeElement.id") == "preview"
    assert page.locator("#preview").is_visible()
    frame = page.frame_locator("#preview iframe")
    background = frame.locator("body").evaluate("body => getComputedStyle(body).backgroundColor")
    assert background == EMAIL_BACKGROUND
    assert csp_reports == []
    assert not BulkEmailJob.objects.exists()
    page.close()
