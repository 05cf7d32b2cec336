"""Review before a big send: the draft kept on the server, the summary, the email from
its own URL under its own policy, "Send a test to me" through a real SMTP sink, Confirm;
each view closed to other companies and other people (404) and CSRF-checked."""

import re

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from cards.models import Membership
from emails.models import BulkEmailJob, EmailDraft, EmailSuppression
from tests.conftest import make_cards, make_user
from tests.emails.test_send_page import list_post

pytestmark = pytest.mark.django_db

SEND = reverse("emails:send")


def signed_in(user, **kwargs):
    client = Client(**kwargs)
    client.force_login(user)
    return client


@pytest.fixture
def admin(company):
    return make_user(
        "owner", company, Membership.Role.ADMIN, email="owner@acme.example", first_name="Olga"
    )


@pytest.fixture
def client(admin):
    return signed_in(admin)


@pytest.fixture
def card(company):
    return make_cards(company, 1)[0]


def big_list(count, duplicates=0):
    rows = [f"kunde{n}@firma.de;Kunde {n}" for n in range(count)]
    rows += [f"KUNDE{n}@firma.de;Kunde {n}" for n in range(duplicates)]
    return "E-Mail;Name\n" + "\n".join(rows)


def drafted(client, card, text, **extra):
    response = client.post(SEND, list_post(cards=[card.pk], recipients_text=text, **extra))
    assert response.status_code == 302, response.content.decode()[:2000]
    assert "/review/" in response["Location"]
    return EmailDraft.objects.get(), response["Location"]


def test_a_list_above_the_threshold_is_reviewed_with_its_duplicates(client, card, settings):
    settings.EMAIL_REVIEW_THRESHOLD = 100
    draft, review_url = drafted(client, card, big_list(150, duplicates=3))
    assert not BulkEmailJob.objects.exists()
    assert (draft.recipient_count, draft.duplicate_count) == (150, 3)
    page = client.get(review_url).content.decode()
    assert "150 addresses" in page and "3 duplicates dropped" in page
    assert "Our new cards" in page and card.full_name in page
    assert "Reply-To" in page and "emails a minute" in page
    # The first recipient as typed, not as its header is encoded.
    assert "Kunde 0 &lt;kunde0@firma.de&gt;" in page


def test_a_small_list_starts_at_once_unless_review_is_asked_for(client, card):
    response = client.post(SEND, list_post(cards=[card.pk], recipients_text="a@example.com"))
    assert response.status_code == 302 and "/background-jobs/" in response["Location"]
    assert BulkEmailJob.objects.count() == 1
    draft, _url = drafted(client, card, "b@example.com", review_first="on")
    assert draft.recipient_count == 1 and BulkEmailJob.objects.count() == 1


def test_holders_are_reviewed_when_asked(client, company):
    cards = make_cards(company, 2)
    response = client.post(
        SEND,
        list_post(
            recipient_mode="holders",
            cards=[c.pk for c in cards],
            recipients_text="",
            review_first="on",
        ),
    )
    assert response.status_code == 302
    draft = EmailDraft.objects.get()
    assert (draft.to_list, draft.recipient_count) == (False, 2)
    answer = client.post(reverse("emails:confirm", args=[draft.pk]))
    assert answer.status_code == 302
    job = BulkEmailJob.objects.get()
    assert sorted(job.items.values_list("recipient_email", flat=True)) == [
        "person1@example.com",
        "person2@example.com",
    ]


def test_confirm_queues_the_reviewed_list_and_forgets_the_draft(client, card, settings):
    settings.EMAIL_REVIEW_THRESHOLD = 10
    draft, _url = drafted(client, card, big_list(20, duplicates=2))
    response = client.post(reverse("emails:confirm", args=[draft.pk]))
    assert response.status_code == 302
    job = BulkEmailJob.objects.get()
    assert job.total_items == 20 and job.subject == "Our new cards"
    assert job.items.filter(recipient_email="kunde19@firma.de", recipient_name="Kunde 19").exists()
    assert not EmailDraft.objects.exists()
    # Confirming twice does not make a second job.
    assert client.post(reverse("emails:confirm", args=[draft.pk])).status_code == 404
    assert BulkEmailJob.objects.count() == 1


def test_a_reviewed_list_keeps_its_senders_consent(client, card):
    # The consent is ticked on the send page; the job made on Confirm records who gave it.
    draft, _url = drafted(client, card, "a@example.com", review_first="on")
    client.post(reverse("emails:confirm", args=[draft.pk]))
    job = BulkEmailJob.objects.get()
    assert job.consent_confirmed_by is not None
    assert job.consent_confirmed_by == job.created_by and job.consent_confirmed_at is not None


def test_a_list_without_consent_is_not_drafted(client, card):
    data = list_post(cards=[card.pk], recipients_text="a@example.com", review_first="on")
    del data["consent"]
    response = client.post(SEND, data)
    assert response.status_code == 400  # the form shown again with its errors
    assert "Confirm that the recipients agreed" in response.content.decode()
    assert not EmailDraft.objects.exists()


def test_confirm_checks_the_kept_list_again(client, card):
    draft, _url = drafted(client, card, "a@example.com", review_first="on")
    EmailDraft.objects.filter(pk=draft.pk).update(recipients=[["not an address", ""]])
    response = client.post(reverse("emails:confirm", args=[draft.pk]))
    assert response.status_code == 302 and "?draft=" in response["Location"]
    assert not BulkEmailJob.objects.exists()


def test_the_test_email_goes_to_the_signed_in_person_only(client, card, smtp_sink, company):
    # Suppressed or not, the person asking gets their test.
    EmailSuppression.objects.create(company=company, email="owner@acme.example", reason="bounced")
    draft, review_url = drafted(client, card, big_list(3), review_first="on")
    response = client.post(reverse("emails:test_send", args=[draft.pk]))
    assert response.status_code == 302 and response["Location"] == review_url
    [received] = smtp_sink.messages
    assert received.rcpt_tos == ["owner@acme.example"]
    message = received.message
    assert message["To"] == "Olga <owner@acme.example>"
    assert message["Subject"] == "Our new cards"
    assert not BulkEmailJob.objects.exists()
    assert "test email was sent to owner@acme.example" in client.get(review_url).content.decode()


def test_the_email_frame_is_the_sent_html_under_its_own_policy(client, card):
    draft, review_url = drafted(client, card, big_list(2), review_first="on")
    page = client.get(review_url).content.decode()
    [src] = re.findall(r'<iframe [^>]*sandbox="" src="([^"]+)"', page)
    response = client.get(src)
    assert response.status_code == 200
    assert response["Content-Security-Policy"] == (
        "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; "
        "frame-ancestors 'self'; sandbox"
    )
    assert response["X-Frame-Options"] == "SAMEORIGIN"
    html = response.content.decode()
    assert "background:#f4f5f7" in html and card.full_name in html
    assert "<script" not in html


def test_change_brings_the_draft_back_into_the_form(client, card):
    draft, _url = drafted(client, card, "Ann <ann@example.com>\nbob@example.com", review_first="on")
    page = client.get(SEND + f"?draft={draft.pk}").content.decode()
    assert "Ann &lt;ann@example.com&gt;\nbob@example.com" in page
    assert 'value="Our new cards"' in page


@pytest.mark.parametrize("view", ["review", "draft_email", "test_send", "confirm"])
def test_other_companies_and_other_people_get_404(client, card, company, outsider, view):
    draft, _url = drafted(client, card, "a@example.com", review_first="on")
    colleague = make_user("colleague", company, Membership.Role.ADMIN)
    url = reverse(f"emails:{view}", args=[draft.pk])
    method = "get" if view in ("review", "draft_email") else "post"
    for user in (outsider, colleague):
        assert getattr(signed_in(user), method)(url).status_code == 404
    assert not BulkEmailJob.objects.exists()
    assert EmailDraft.objects.filter(pk=draft.pk).exists()


def test_members_who_are_not_admins_are_refused(card, company, client):
    draft, _url = drafted(client, card, "a@example.com", review_first="on")
    member = make_user("member", company, Membership.Role.MEMBER)
    assert signed_in(member).get(reverse("emails:review", args=[draft.pk])).status_code == 403


@pytest.mark.parametrize("view", ["test_send", "confirm"])
def test_posts_need_the_csrf_token(admin, card, view, smtp_sink):
    client = signed_in(admin)
    draft, _url = drafted(client, card, "a@example.com", review_first="on")
    checked = signed_in(admin, enforce_csrf_checks=True)
    assert checked.post(reverse(f"emails:{view}", args=[draft.pk])).status_code == 403
    assert not BulkEmailJob.objects.exists() and not smtp_sink.messages
    assert not mail.outbox


def test_old_drafts_are_deleted_and_a_person_keeps_a_few(client, card):
    from datetime import timedelta

    from django.utils import timezone

    for n in range(7):
        drafted_response = client.post(
            SEND, list_post(cards=[card.pk], recipients_text=f"r{n}@example.com", review_first="on")
        )
        assert drafted_response.status_code == 302
    assert EmailDraft.objects.count() == 5
    EmailDraft.objects.update(created_at=timezone.now() - timedelta(days=2))
    client.post(
        SEND, list_post(cards=[card.pk], recipients_text="x@example.com", review_first="on")
    )
    assert EmailDraft.objects.count() == 1


def test_the_review_costs_a_bounded_number_of_queries(
    client, card, settings, django_assert_max_num_queries
):
    settings.EMAIL_REVIEW_THRESHOLD = 10
    draft, review_url = drafted(client, card, big_list(500))
    with django_assert_max_num_queries(12):
        assert client.get(review_url).status_code == 200
    with django_assert_max_num_queries(8):
        assert client.get(reverse("emails:draft_email", args=[draft.pk])).status_code == 200


def test_the_review_is_in_the_companys_language(client, card, company):
    company.language = "de"
    company.save()
    draft, review_url = drafted(client, card, big_list(3, duplicates=1), review_first="on")
    page = client.get(review_url).content.decode()
    assert "Vor dem Senden prüfen" in page
    assert "1 Duplikat entfernt" in page
    assert "Test an mich senden" in page


def test_a_flood_of_bad_lines_gets_a_small_page(client, card, settings):
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.EMAIL_MAX_RECIPIENTS = 5_000  # lists of 10,000 lines and 500,000 bytes at most
    # 150,000 bytes: more than an upload put back in the form (web.KEEP_UPLOAD_CHARS).
    flood = SimpleUploadedFile("x.csv", b"x\n" * 75_000, content_type="text/csv")
    response = client.post(
        SEND, list_post(cards=[card.pk], recipients_text="", recipients_file=flood)
    )
    page = response.content.decode()
    assert response.status_code == 400
    assert "The list has more than 10,000 lines" in page
    assert len(page) < 20_000  # neither the lines nor the file come back
    bad = SimpleUploadedFile("y.csv", b"no address here\n" * 1_500, content_type="text/csv")
    response = client.post(
        SEND, list_post(cards=[card.pk], recipients_text="", recipients_file=bad)
    )
    page = response.content.decode()
    assert "1,500 lines of the list have problems" in page
    assert page.count("a name without an email address") == 100
    assert "…and 1,400 more lines with problems." in page
    assert len(page) < 60_000
    assert not EmailDraft.objects.exists() and not BulkEmailJob.objects.exists()
