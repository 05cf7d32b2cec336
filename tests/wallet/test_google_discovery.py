"""Every body sent to Google Wallet validates against the Wallet API's discovery document
(tests/wallet/walletobjects.v1.json, walked by tests/wallet/discovery.py). The loopback
Google refuses a body with violations, so every sync in the other tests checks its
bodies too; here the walker itself is proven, and the richest bodies are checked."""

import pytest

from bulkjobs.engine import run_once
from bulkjobs.kinds import get_kind
from tests.wallet.discovery import schemas, violations
from wallet.google.payload import build_class, build_object
from wallet.services import create_wallet_job


def test_the_document_is_googles_wallet_api():
    assert {"GenericObject", "GenericClass", "Uri", "TextModuleData"} <= set(schemas())
    assert (
        "GENERIC_BUSINESS_CARD" in schemas()["GenericObject"]["properties"]["genericType"]["enum"]
    )


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"id": "x", "colour": "#fff"}, "GenericObject.colour: unknown field"),
        ({"id": "x", "state": "LIVE"}, "GenericObject.state: 'LIVE' is not one of its enum values"),
        ({"id": 7}, "GenericObject.id: a string expected, got int"),
        ({"id": "x", "textModulesData": {}}, "GenericObject.textModulesData: an array expected"),
        (
            {"id": "x", "linksModuleData": {"uris": [{"uri": "https://x", "link": 1}]}},
            "GenericObject.linksModuleData.uris[0].link: unknown field",
        ),
        (
            {"id": "x", "header": {"defaultValue": {"language": "de", "value": ["a"]}}},
            "GenericObject.header.defaultValue.value: a string expected, got list",
        ),
        (
            {"id": "x", "barcode": {"type": "qrCode"}},
            "GenericObject.barcode.type: 'qrCode' is a deprecated enum value",
        ),
        ({"id": "x", "hasUsers": "yes"}, "GenericObject.hasUsers: a boolean expected, got str"),
    ],
)
def test_the_walker_finds(body, problem):
    assert any(found.startswith(problem) for found in violations(body, "GenericObject")), (
        violations(body, "GenericObject")
    )


def test_a_null_clears_a_field_under_patch():
    assert violations({"id": "x", "subheader": None, "logo": None}, "GenericObject") == []


@pytest.fixture
def full_card(card):
    """Every field set, with an internationalised website, a German company."""
    company = card.company
    company.name, company.language, company.country = "Müller & Söhne", "de", "DE"
    company.save()
    card.phone, card.mobile = "+49 (0)711 / 123 45-67", "junk"
    card.website = "https://www.müller-söhne.de/team/jürgen?x=ä"
    card.email = "jürgen@müller-söhne.de"
    card.save()
    return card


def test_the_richest_object_and_its_class_validate(google, full_card):
    assert violations(build_object(full_card), "GenericObject") == []
    assert violations(build_class(full_card.company), "GenericClass") == []


def test_a_deleted_cards_expiry_validates(google, full_card):
    assert violations({"id": "x.y", "state": "EXPIRED"}, "GenericObject") == []


def test_a_whole_sync_sends_only_valid_bodies(google, full_card, company):
    create_wallet_job(company, cards=[full_card])
    run_once(get_kind("wallet"))
    sent = [body for method, _path, body in google.requests if body is not None]
    assert sent and google.schema_violations == []
    assert len(google.objects) == 1
