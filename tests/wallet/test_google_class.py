"""The company's Google Wallet class kept up to date, the settings a generic pass shows
(logo, colour) reaching every object, and every Google request paying the shared rate
limit, against the loopback OAuth + walletobjects server."""

import time

from bulkjobs.models import RateBucket
from cards.models import BusinessCard, Company
from tests.wallet.google_server import (
    GENERIC_CLASS_FIELDS,
)
from wallet import limits
from wallet.google.client import GoogleWalletClient
from wallet.google.payload import class_id_for, object_id_for
from wallet.models import GoogleWalletClass


def sync(card, last_hash=""):
    with GoogleWalletClient() as client:
        return client.sync_card(card, last_hash)


def class_bodies(google):
    return [body for method, path, body in google.requests if path.startswith("genericClass")]


def test_a_class_made_before_is_brought_up_to_date_once(google, card):
    # As an earlier version created it: the id only, so only its first saver could keep
    # a card (Google's default is ONE_USER_ALL_DEVICES).
    class_id = class_id_for(card.company)
    google.classes[class_id] = {"id": class_id}

    sync(card)
    assert google.calls("PATCH", "genericClass") == [("PATCH", f"genericClass/{class_id}")]
    assert google.classes[class_id]["multipleDevicesAndHoldersAllowedStatus"] == (
        "MULTIPLE_HOLDERS"
    )
    assert GoogleWalletClass.objects.get(class_id=class_id).content_hash

    # Later batches (new clients, as in another run) send nothing for the class.
    card.full_name = "Ada King"
    card.save()
    before = len(google.requests)
    sync(BusinessCard.objects.get(pk=card.pk))
    assert [path for _method, path in google.calls()[before:]] == [
        f"genericObject/{object_id_for(card)}"
    ]


def test_a_class_sent_differently_before_is_sent_again(google, card):
    _, card_hash = sync(card)
    class_id = class_id_for(card.company)
    # What was last sent differs from today's class (an older version's body).
    GoogleWalletClass.objects.filter(class_id=class_id).update(content_hash="0" * 64)
    before = len(google.requests)
    assert sync(card, card_hash)[0] == "unchanged"
    assert google.calls()[before:] == [("PATCH", f"genericClass/{class_id}")]
    sync(card, card_hash)
    assert len(google.requests) == before + 1


def test_classes_carry_only_generic_class_fields(google, company):
    other = Company.objects.create(name="Other Co", slug="other-co")
    for owner in (company, other):
        sync(BusinessCard.objects.create(company=owner, full_name="Someone"))
    bodies = class_bodies(google)
    assert len(google.classes) == 2 and bodies
    for body in bodies:
        # Google refuses other names (issuerName, hexBackgroundColor are loyaltyClass's).
        assert set(body) <= GENERIC_CLASS_FIELDS


def test_logo_and_colour_settings_reach_every_object(google, company, settings):
    cards = [BusinessCard.objects.create(company=company, full_name=f"P{n}") for n in range(3)]
    hashes = {card.pk: sync(card)[1] for card in cards}
    assert {sync(card, hashes[card.pk])[0] for card in cards} == {"unchanged"}

    settings.WALLET_BRAND_COLOR = "#aa3300"
    settings.GOOGLE_WALLET_LOGO_URL = "https://cards.example.com/static/new-logo.png"
    assert {sync(card, hashes[card.pk])[0] for card in cards} == {"synced"}
    for card in cards:
        stored = google.objects[object_id_for(card)]
        assert stored["hexBackgroundColor"] == "#aa3300"
        assert stored["logo"]["sourceUri"]["uri"].endswith("/new-logo.png")
        assert stored["cardTitle"]["defaultValue"]["value"] == company.name


def test_every_google_request_takes_a_token_from_the_shared_bucket(google, card, settings):
    # Slow enough that no token frees during the test: the bucket's time moves forward
    # by exactly one interval per request taken.
    settings.GOOGLE_WALLET_RATE_LIMIT = "30/h"
    interval = limits.google_limit().rate.interval
    start = time.time()

    _, first = sync(card)  # class PATCH (404) + POST, object PATCH (404) + POST
    card.full_name = "Ada King"
    card.save()
    sync(BusinessCard.objects.get(pk=card.pk), first)  # object PATCH

    bucket = RateBucket.objects.get(key=limits.GOOGLE_BUCKET)
    assert len(google.requests) == 5
    assert round((bucket.tat - start) / interval) == len(google.requests)
