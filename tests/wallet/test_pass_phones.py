"""Phone numbers on the passes: Google Wallet's object and the Apple pass show a number
as people write it in the company's country and dial it as E.164 (cards/phones.py)."""

import pytest

from tests.cards.test_phones import GERMAN, german_card


@pytest.mark.django_db
@pytest.mark.parametrize(("typed", "country", "e164", "display"), GERMAN)
def test_google_wallet_object(settings, typed, country, e164, display):
    from wallet.google.payload import build_object

    settings.GOOGLE_WALLET_ISSUER_ID = "3388000000012345678"
    body = build_object(german_card(typed))
    texts = {module["id"]: module["body"] for module in body["textModulesData"]}
    links = {link["id"]: link["uri"] for link in body["linksModuleData"]["uris"]}
    assert texts["phone"] == display
    assert links.get("phone") == (f"tel:{e164}" if e164 else None)


@pytest.mark.django_db
@pytest.mark.parametrize(("typed", "country", "e164", "display"), GERMAN)
def test_apple_pass(apple, typed, country, e164, display):
    from wallet.apple.pkpass import pass_json
    from wallet.models import CardWalletState

    card = german_card(typed)
    data = pass_json(card, CardWalletState.objects.for_card(card))
    (front,) = [f for f in data["generic"]["auxiliaryFields"] if f["key"] == "phone"]
    assert (front["label"], front["value"]) == ("TELEFON", display)
    (back,) = [f for f in data["generic"]["backFields"] if f["key"] == "back-phone"]
    assert back["value"] == display
    if e164:
        assert back["attributedValue"] == f'<a href="tel:{e164}">{display}</a>'
    else:
        assert "attributedValue" not in back


@pytest.mark.django_db
def test_the_front_labels_a_mobile_as_mobile(apple):
    from wallet.apple.pkpass import pass_json
    from wallet.models import CardWalletState

    card = german_card("", mobile="0171 1234567")
    data = pass_json(card, CardWalletState.objects.for_card(card))
    (field,) = [f for f in data["generic"]["auxiliaryFields"] if f["key"] != "email"]
    assert (field["key"], field["label"], field["value"]) == ("mobile", "MOBIL", "0171 1234567")
