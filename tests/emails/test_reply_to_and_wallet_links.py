"""The card email's niceties, as delivered to the real SMTP sink: a Reply-To per the
company's choice, and Add-to-Wallet links for the platforms that are configured."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from bulkjobs.engine import run_once
from cards.models import BusinessCard, Company
from emails.services import create_email_job
from tests.conftest import make_email_job
from tests.wallet.conftest import PASS_TYPE_ID, TEAM_ID
from tests.wallet.google_server import make_service_account
from wallet.apple.devcerts import make_chain, write_chain
from wallet.models import CardWalletState

pytestmark = pytest.mark.django_db

GOOGLE_ISSUER = "3388000000012345678"


def delivered(sink):
    assert len(sink.messages) == 1
    message = sink.messages[0].message
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    return message, text, html


@pytest.mark.parametrize(
    ("mode", "fixed", "holder_email", "expected"),
    [
        ("holder", "", "ada@example.com", "Ada Lovelace <ada@example.com>"),
        ("holder", "", "", None),
        ("holder", "office@acme.example", "", "office@acme.example"),
        ("fixed", "office@acme.example", "ada@example.com", "office@acme.example"),
        ("none", "office@acme.example", "ada@example.com", None),
    ],
)
def test_reply_to_follows_the_companys_choice(
    company, card, email_kind, smtp_sink, mode, fixed, holder_email, expected
):
    Company.objects.filter(pk=company.pk).update(reply_to=mode, reply_to_address=fixed)
    BusinessCard.objects.filter(pk=card.pk).update(email=holder_email)
    make_email_job(company, ["jane@example.org"], card=BusinessCard.objects.get(pk=card.pk))

    run_once(email_kind)

    message, _text, _html = delivered(smtp_sink)
    assert message["Reply-To"] == expected
    # The sender stays the platform's: Reply-To only steers replies.
    # The company by name, on the platform's address (#21).
    assert message["From"] == "Acme via Business Cards <cards@example.com>"


def test_reply_to_of_a_card_sent_to_its_holder_and_an_unusual_name(company, email_kind, smtp_sink):
    # A name with a line break (from an import) must not split the header; a non-ASCII
    # one must survive the header encoding.
    card = BusinessCard.objects.create(
        company=company, full_name="Zoë\nÜnal", email="zoe@example.com"
    )
    create_email_job(company=company, cards=[card], subject="Hi")

    run_once(email_kind)

    message, _text, _html = delivered(smtp_sink)
    assert message["To"] == "Zoë Ünal <zoe@example.com>"
    assert message["Reply-To"] == "Zoë Ünal <zoe@example.com>"


def test_operators_set_the_reply_to_in_the_django_admin(company):
    operator = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client = Client()
    client.force_login(operator)
    url = reverse("admin:cards_company_change", args=[company.pk])
    form = {
        "name": company.name,
        "slug": company.slug,
        "language": "en",
        "time_zone": "UTC",
        "reply_to": "fixed",
        "reply_to_address": "",
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
    }
    assert 'name="reply_to"' in client.get(url).content.decode()

    refused = client.post(url, form)
    assert refused.status_code == 200
    assert "Enter the address replies should go to." in refused.content.decode()
    company.refresh_from_db()
    assert company.reply_to == "holder"

    saved = client.post(url, {**form, "reply_to_address": "office@acme.example"})
    assert saved.status_code == 302
    company.refresh_from_db()
    assert (company.reply_to, company.reply_to_address) == ("fixed", "office@acme.example")


def test_no_wallet_links_when_no_platform_is_configured(company, card, email_kind, smtp_sink):
    make_email_job(company, ["jane@example.org"], card=card)

    run_once(email_kind)

    _message, text, html = delivered(smtp_sink)
    assert "Wallet" not in text and "Wallet" not in html
    assert "View the card" in html  # the rest of the email is intact


@pytest.fixture
def apple_configured(settings, tmp_path):
    paths = write_chain(make_chain(TEAM_ID, PASS_TYPE_ID), tmp_path)
    settings.APPLE_PASS_CERT = str(paths["pass_cert"])
    settings.APPLE_PASS_KEY = str(paths["pass_key"])
    settings.APPLE_PASS_P12 = ""
    settings.APPLE_WWDR_CERT = str(paths["wwdr"])
    settings.APPLE_TEAM_ID = TEAM_ID
    settings.APPLE_PASS_TYPE_ID = PASS_TYPE_ID
    return settings


@pytest.fixture
def google_configured(settings, tmp_path):
    _info, key_path, _public_key = make_service_account(tmp_path)
    settings.GOOGLE_WALLET_ISSUER_ID = GOOGLE_ISSUER
    settings.GOOGLE_WALLET_SERVICE_ACCOUNT_FILE = str(key_path)
    settings.GOOGLE_WALLET_SERVICE_ACCOUNT_JSON = ""
    return settings


def test_apple_wallet_link_when_apple_is_configured(
    apple_configured, company, card, email_kind, smtp_sink
):
    make_email_job(company, ["jane@example.org"], card=card)

    run_once(email_kind)

    _message, text, html = delivered(smtp_sink)
    url = f"http://localhost:8000/c/{card.public_id}/pass.pkpass"
    assert f"Add to Apple Wallet: {url}" in text
    assert f'href="{url}"' in html and "Add to Apple Wallet" in html
    # Google is not configured: no link to it.
    assert "Google Wallet" not in text and "Google Wallet" not in html
    # The link downloads the card's signed pass.
    response = Client().get(url.removeprefix("http://localhost:8000"))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/vnd.apple.pkpass"


def test_google_wallet_link_once_the_card_has_a_google_object(
    google_configured, company, email_kind, smtp_sink
):
    synced, unsynced = (
        BusinessCard.objects.create(company=company, full_name=name, email=f"{name}@example.com")
        for name in ("synced", "unsynced")
    )
    state = CardWalletState.objects.for_card(synced)
    CardWalletState.objects.filter(pk=state.pk).update(google_object_id="3388.synced")
    create_email_job(company=company, cards=[synced, unsynced], subject="Hi")

    run_once(email_kind)

    assert smtp_sink.wait_for(2) == 2
    by_recipient = {m.rcpt_tos[0]: m.message for m in smtp_sink.messages}
    synced_text = by_recipient["synced@example.com"].get_body(("plain",)).get_content()
    synced_html = by_recipient["synced@example.com"].get_body(("html",)).get_content()
    link = synced_text.split("Add to Google Wallet: ", 1)[1].split()[0]
    assert link.startswith("https://pay.google.com/gp/v/save/")
    assert f'href="{link}"' in synced_html
    # Before a sync created its object, the save link would open nothing: left out.
    unsynced_text = by_recipient["unsynced@example.com"].get_body(("plain",)).get_content()
    assert "Google Wallet" not in unsynced_text
    assert "Apple Wallet" not in synced_text + unsynced_text


def test_wallet_links_cost_one_query_per_batch(
    google_configured, apple_configured, company, django_assert_max_num_queries
):
    from emails.message import wallet_links

    cards = [
        BusinessCard.objects.create(company=company, full_name=f"P{n}", email=f"p{n}@example.com")
        for n in range(5)
    ]
    for card in cards:
        state = CardWalletState.objects.for_card(card)
        CardWalletState.objects.filter(pk=state.pk).update(google_object_id=f"3388.{card.pk}")

    with django_assert_max_num_queries(1):
        links = wallet_links(cards)

    assert all(links[c.pk]["apple"] and links[c.pk]["google"] for c in cards)
