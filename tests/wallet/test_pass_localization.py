"""Localized passes: every pkpass carries en.lproj and de.lproj pass.strings (listed in
the signed manifest), pass.json speaks the company's language, Google objects carry
translatedValues, and the card page shows the Add-to-Wallet badges in that language."""

import re

import pytest
from django.urls import reverse

from tests.wallet.conftest import verify_pkpass
from wallet.google.payload import build_object


def strings(data):
    """A pass.strings file as {key: value} (UTF-16 with its byte order mark)."""
    assert data[:2] == b"\xff\xfe"
    text = data.decode("utf-16")
    pairs = re.findall(r'^"((?:[^"\\]|\\.)*)" = "((?:[^"\\]|\\.)*)";$', text, re.MULTILINE)
    assert len(pairs) == len(text.strip().splitlines())  # every line is one pair
    return dict(pairs)


def download(client, card):
    response = client.get(reverse("wallet:apple_pass", kwargs={"public_id": card.public_id}))
    assert response.status_code == 200
    return response.content


def labels(pass_json):
    generic = pass_json["generic"]
    return {f["key"]: f["label"] for group in generic.values() for f in group}


@pytest.fixture
def german(card):
    card.company.language = "de"
    card.company.save()
    return card


def test_a_german_companys_pass_carries_german_labels(client, apple, german, chain_files, tmp_path):
    files = verify_pkpass(download(client, german), chain_files, tmp_path)
    # Both localizations are in the signed manifest (verify_pkpass checked every hash).
    assert {"de.lproj/pass.strings", "en.lproj/pass.strings"} <= set(files)
    found = labels(files["pass.json"])
    assert (found["title"], found["back-phone"], found["back-address"]) == (
        "POSITION", "TELEFON", "ADRESSE"
    )  # fmt: skip
    assert files["pass.json"]["description"] == "Visitenkarte von Ada Lovelace (Acme)"
    german_strings = strings(files["de.lproj/pass.strings"])
    english_strings = strings(files["en.lproj/pass.strings"])
    # Keys are what pass.json carries; each language maps them to its own words.
    assert german_strings["FIRMA"] == "FIRMA" and english_strings["FIRMA"] == "COMPANY"
    assert english_strings["POSITION"] == "TITLE"
    assert english_strings["Position geändert: %@"] == "Title changed to %@"
    assert set(german_strings) == set(english_strings)
    assert set(found.values()) <= set(german_strings)
    changes = {f["changeMessage"] for g in files["pass.json"]["generic"].values() for f in g
               if "changeMessage" in f}  # fmt: skip
    assert changes <= set(german_strings)


def test_an_english_companys_pass_keys_are_english(client, apple, card, chain_files, tmp_path):
    files = verify_pkpass(download(client, card), chain_files, tmp_path)
    assert labels(files["pass.json"])["back-address"] == "ADDRESS"
    assert strings(files["de.lproj/pass.strings"])["ADDRESS"] == "ADRESSE"
    assert strings(files["en.lproj/pass.strings"])["ADDRESS"] == "ADDRESS"


def test_changing_the_company_language_is_a_new_version(client, apple, card):
    english = download(client, card)
    card.company.language = "de"
    card.company.save()
    card.refresh_from_db()
    assert download(client, card) != english


def test_google_objects_carry_translated_values(google, german):
    body = build_object(german)
    phone = next(module for module in body["textModulesData"] if module["id"] == "phone")
    assert phone["header"] == "Telefon"
    assert phone["localizedHeader"] == {
        "defaultValue": {"language": "de", "value": "Telefon"},
        "translatedValues": [{"language": "en", "value": "Phone"}],
    }
    link = next(uri for uri in body["linksModuleData"]["uris"] if uri["id"] == "card")
    assert link["localizedDescription"]["defaultValue"]["value"] == "Karte öffnen"
    assert link["localizedDescription"]["translatedValues"][0]["value"] == "Open the card"
    # Card data is not translated, only tagged with the company's language.
    assert body["header"] == {"defaultValue": {"language": "de", "value": "Ada Lovelace"}}


def test_card_page_shows_the_badges_in_the_company_language(client, apple, google, german):
    from bulkjobs.engine import run_once
    from bulkjobs.kinds import get_kind
    from wallet.services import create_wallet_job

    create_wallet_job(german.company, cards=[german])
    run_once(get_kind("wallet"))  # the Google object exists: both badges show
    page = client.get(german.get_absolute_url()).content.decode()
    assert (
        'src="/static/img/wallet/add-to-apple-wallet-de.svg" alt="Zu Apple Wallet hinzufügen"'
        in page
    )
    assert (
        'src="/static/img/wallet/add-to-google-wallet-de.svg" alt="Zu Google Wallet hinzufügen"'
        in page
    )
    german.company.language = "en"
    german.company.save()
    page = client.get(german.get_absolute_url()).content.decode()
    assert 'src="/static/img/wallet/add-to-apple-wallet-en.svg" alt="Add to Apple Wallet"' in page
    assert 'src="/static/img/wallet/add-to-google-wallet-en.svg" alt="Add to Google Wallet"' in page


def test_badges_are_local_files_with_the_standard_wording():
    from django.contrib.staticfiles import finders

    for name, wording in (
        ("add-to-apple-wallet-en.svg", "Add to Apple Wallet"),
        ("add-to-apple-wallet-de.svg", "Zu Apple Wallet hinzufügen"),
        ("add-to-google-wallet-en.svg", "Add to Google Wallet"),
        ("add-to-google-wallet-de.svg", "Zu Google Wallet hinzufügen"),
    ):
        path = finders.find(f"img/wallet/{name}")
        assert path, name
        svg = open(path, encoding="utf-8").read()
        assert f"<title>{wording}</title>" in svg
        assert 'fill="#000"' in svg  # the black badge
        # Nothing fetched from elsewhere when the page shows it.
        assert "href=" not in svg and "url(" not in svg
