"""Starting jobs from the web: send by email (preview, bad lines), wallet sync, the card list."""

from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from emails.models import BulkEmailJob, BulkEmailJobItem
from tests.conftest import make_cards

SEND = reverse("emails:send")


def send_data(**overrides):
    data = {
        "card_mode": "all",
        "recipient_mode": "holders",
        "recipients_text": "",
        # The consent a list needs (ignored for "each card to its holder").
        "consent": "on",
        "subject": "Our new cards",
        "message": "Hello from Acme",
        "action": "start",
    }
    data.update(overrides)
    return data


def test_send_page_lists_the_companys_cards_only(admin_client_, cards, other_company):
    make_cards(other_company, 1, prefix="Stranger")
    page = admin_client_.get(SEND).content.decode()
    assert "<h1>Send cards by email</h1>" in page
    assert "Person 1" in page and "Stranger 1" not in page
    assert 'enctype="multipart/form-data"' in page


def test_send_all_cards_to_their_holders(admin_client_, cards, owner):
    response = admin_client_.post(SEND, send_data())
    job = BulkEmailJob.objects.get()
    assert response["Location"] == reverse("bulkjobs:job_detail", args=["email", job.pk])
    assert (job.subject, job.message, job.created_by, job.total_items) == (
        "Our new cards",
        "Hello from Acme",
        owner,
        3,
    )
    assert sorted(BulkEmailJobItem.objects.values_list("recipient_email", flat=True)) == [
        "person1@example.com",
        "person2@example.com",
        "person3@example.com",
    ]


def test_send_selected_cards(admin_client_, cards):
    admin_client_.post(SEND, send_data(card_mode="selected", cards=[cards[1].pk]))
    assert list(BulkEmailJobItem.objects.values_list("card_id", flat=True)) == [cards[1].pk]


def test_selection_must_not_be_empty(admin_client_, cards):
    response = admin_client_.post(SEND, send_data(card_mode="selected"))
    assert response.status_code == 400
    assert "Choose at least one card." in response.content.decode()
    assert not BulkEmailJob.objects.exists()


def test_another_companys_card_cannot_be_chosen(admin_client_, cards, other_company):
    (stranger,) = make_cards(other_company, 1, prefix="Stranger")
    response = admin_client_.post(SEND, send_data(card_mode="selected", cards=[stranger.pk]))
    assert response.status_code == 400
    assert not BulkEmailJob.objects.exists()


def test_pasted_list_with_bad_lines_shows_line_numbers_and_creates_nothing(admin_client_, cards):
    text = "ok@example.com\n\nnot-an-address\nJane <jane@example.com>\nbob@localhost\n"
    response = admin_client_.post(
        SEND,
        send_data(
            card_mode="selected", cards=[cards[0].pk], recipient_mode="list", recipients_text=text
        ),
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "Nothing was created." in page
    assert "Line 3:" in page and "not-an-address" in page
    assert "Line 5:" in page and "bob@localhost" in page
    assert "Line 1:" not in page and "Line 4:" not in page
    # The pasted list is kept so it can be fixed in place.
    assert "Jane &lt;jane@example.com&gt;" in page
    assert not BulkEmailJob.objects.exists()
    assert not BulkEmailJobItem.objects.exists()


def test_bad_lines_are_shown_on_preview_too(admin_client_, cards):
    response = admin_client_.post(
        SEND,
        send_data(
            card_mode="selected",
            cards=[cards[0].pk],
            recipient_mode="list",
            recipients_text="a@example.com\nbroken",
            action="preview",
        ),
    )
    assert "Line 2:" in response.content.decode()
    assert not BulkEmailJob.objects.exists()


def test_uploaded_csv_with_bad_lines(admin_client_, cards):
    upload = SimpleUploadedFile(
        "contacts.csv", b"\xef\xbb\xbfemail,name\nann@example.com,Ann\nnope,Bob\n", "text/csv"
    )
    response = admin_client_.post(
        SEND,
        send_data(
            card_mode="selected", cards=[cards[0].pk], recipient_mode="list", recipients_file=upload
        ),
    )
    page = response.content.decode()
    assert response.status_code == 400
    assert "Line 3:" in page and "nope" in page
    # The file's text is carried into the form, so a fix does not need a re-upload.
    assert "ann@example.com,Ann" in page
    assert not BulkEmailJob.objects.exists()


def test_uploaded_csv_creates_one_item_per_address(admin_client_, cards):
    upload = SimpleUploadedFile("c.csv", b"email,name\nann@example.com,Ann\nbob@example.com,Bob\n")
    admin_client_.post(
        SEND,
        send_data(
            card_mode="selected", cards=[cards[0].pk], recipient_mode="list", recipients_file=upload
        ),
    )
    items = BulkEmailJobItem.objects.order_by("id")
    assert [(i.card_id, i.recipient_email, i.recipient_name) for i in items] == [
        (cards[0].pk, "ann@example.com", "Ann"),
        (cards[0].pk, "bob@example.com", "Bob"),
    ]


def test_a_list_needs_exactly_one_card(admin_client_, cards):
    response = admin_client_.post(
        SEND, send_data(recipient_mode="list", recipients_text="ann@example.com")
    )
    assert response.status_code == 400
    assert "Choose exactly one card to send to a list of addresses." in response.content.decode()
    assert not BulkEmailJob.objects.exists()


def test_a_workbook_upload_is_refused_with_how_to_save_it(admin_client_, cards):
    upload = SimpleUploadedFile("c.xlsx", b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00")
    response = admin_client_.post(
        SEND,
        send_data(
            card_mode="selected", cards=[cards[0].pk], recipient_mode="list", recipients_file=upload
        ),
    )
    assert "CSV UTF-8" in response.content.decode()
    assert not BulkEmailJob.objects.exists()


def test_card_without_email_is_reported_by_card(admin_client_, company, cards):
    cards[1].email = ""
    cards[1].save()
    response = admin_client_.post(SEND, send_data())
    page = response.content.decode()
    assert "Card 2 (Person 2): the card has no valid email address" in page
    assert not BulkEmailJob.objects.exists()


def test_subject_is_required(admin_client_, cards):
    response = admin_client_.post(SEND, send_data(subject=""))
    assert response.status_code == 400
    assert not BulkEmailJob.objects.exists()


def test_preview_renders_the_first_cards_email_and_creates_nothing(admin_client_, cards):
    response = admin_client_.post(SEND, send_data(action="preview", message="Dear friends"))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Preview: the email for Person 1" in page
    assert "Person 1 &lt;person1@example.com&gt;" in page
    assert "Person 1.vcf" in page
    # The email itself from its own URL, in a sandboxed frame (emails/review.py).
    assert 'sandbox="" src="/emails/send/review/' in page and "srcdoc=" not in page
    assert "Dear friends" in page
    assert not BulkEmailJob.objects.exists()


def test_preview_for_a_list_uses_the_first_address(admin_client_, cards):
    response = admin_client_.post(
        SEND,
        send_data(
            card_mode="selected",
            cards=[cards[2].pk],
            recipient_mode="list",
            recipients_text="# contacts\nZed <zed@example.com>\nann@example.com",
            action="preview",
        ),
    )
    page = response.content.decode()
    assert "Preview: the email for Person 3" in page
    assert "Zed &lt;zed@example.com&gt;" in page


# --- wallet sync ----------------------------------------------------------------------

SYNC = reverse("wallet:sync")


def test_wallet_page_lists_platforms(admin_client_, cards):
    from wallet import services

    page = admin_client_.get(SYNC).content.decode()
    assert "<h1>Sync cards to wallets</h1>" in page
    for entry in services.platform_status().values():
        assert entry["label"] in page
        assert ("Configured" if entry["configured"] else "Not configured") in page


def test_wallet_sync_is_refused_when_no_platform_is_configured(
    admin_client_, owner, cards, settings
):
    """With no wallet settings, the page refuses and creates nothing: in plain words for
    the company admin, naming the missing settings for a platform operator (staff).
    (The success path, with test certificates, is in tests/wallet/test_wallet_services.py.)"""
    from wallet.models import BulkWalletApiJob

    settings.APPLE_PASS_CERT = settings.APPLE_PASS_P12 = settings.APPLE_TEAM_ID = ""
    settings.GOOGLE_WALLET_ISSUER_ID = ""
    settings.GOOGLE_WALLET_SERVICE_ACCOUNT_FILE = settings.GOOGLE_WALLET_SERVICE_ACCOUNT_JSON = ""
    response = admin_client_.post(
        SYNC, {"card_mode": "selected", "cards": [cards[0].pk, cards[2].pk]}
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "Wallet sync is not set up on this site yet" in page
    assert "APPLE_" not in page and "GOOGLE_WALLET" not in page
    owner.is_staff = True
    owner.save()
    response = admin_client_.post(SYNC, {"card_mode": "all"})
    assert response.status_code == 400
    page = response.content.decode()
    assert "Wallet sync is not configured" in page and "GOOGLE_WALLET_ISSUER_ID" in page
    assert not BulkWalletApiJob.objects.exists()


def test_wallet_sync_selection_must_not_be_empty(admin_client_, cards):
    response = admin_client_.post(SYNC, {"card_mode": "selected"})
    assert response.status_code == 400
    assert "Choose at least one card." in response.content.decode()


# --- card list ------------------------------------------------------------------------


def test_card_list_search_and_public_links(member_client, company, other_company):
    cards = make_cards(company, 3)
    make_cards(other_company, 1, prefix="Person")  # same names, other company
    page = member_client.get(reverse("cards:list")).content.decode()
    assert "<h1>Cards</h1>" in page
    assert page.count("<td>Person 1</td>") == 1
    assert cards[0].get_absolute_url() in page
    found = member_client.get(reverse("cards:list"), {"q": "person2@"}).content.decode()
    assert "Person 2" in found and "Person 3" not in found
    by_name = member_client.get(reverse("cards:list"), {"q": "son 3"}).content.decode()
    assert "<td>Person 3</td>" in by_name and "<td>Person 1</td>" not in by_name


def test_all_cards_of_a_company_without_cards(admin_client_):
    for action in ("preview", "start"):
        response = admin_client_.post(SEND, send_data(action=action))
        assert response.status_code == 400
        assert "The company has no cards yet." in response.content.decode()
    assert not BulkEmailJob.objects.exists()


def test_preview_of_a_list_with_only_comments(admin_client_, cards):
    response = admin_client_.post(
        SEND,
        send_data(
            card_mode="selected",
            cards=[cards[0].pk],
            recipient_mode="list",
            recipients_text="# nobody yet\n",
            action="preview",
        ),
    )
    assert response.status_code == 400
    assert "The recipient list is empty." in response.content.decode()
