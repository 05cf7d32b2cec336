"""GoogleWalletClient against a real loopback OAuth + walletobjects server."""

import json
import re
import socket

import pytest

from cards.models import BusinessCard
from tests.wallet.google_server import (
    ISSUER_ID,
    google_error,
    make_service_account,
)
from wallet.errors import (
    NotConfigured,
    PermanentError,
    ProviderError,
    TransientError,
    Unreachable,
)
from wallet.google.checks import check_google_wallet_settings
from wallet.google.client import SYNCED, GoogleWalletClient
from wallet.google.conf import is_configured, missing_settings
from wallet.google.payload import body_hash, build_object, class_id_for, object_id_for


def sync(card, last_hash=""):
    with GoogleWalletClient() as client:
        return client.sync_card(card, last_hash)


def value(localized):
    return localized["defaultValue"]["value"]


def test_not_configured_names_missing_settings(settings):
    settings.GOOGLE_WALLET_ISSUER_ID = ""
    settings.GOOGLE_WALLET_SERVICE_ACCOUNT_FILE = ""
    settings.GOOGLE_WALLET_SERVICE_ACCOUNT_JSON = ""
    assert not is_configured()
    assert missing_settings() == [
        "GOOGLE_WALLET_ISSUER_ID",
        "GOOGLE_WALLET_SERVICE_ACCOUNT_FILE or GOOGLE_WALLET_SERVICE_ACCOUNT_JSON",
    ]
    with pytest.raises(NotConfigured, match="GOOGLE_WALLET_ISSUER_ID.*SERVICE_ACCOUNT_FILE"):
        GoogleWalletClient()

    settings.GOOGLE_WALLET_ISSUER_ID = ISSUER_ID
    settings.GOOGLE_WALLET_SERVICE_ACCOUNT_JSON = "{}"
    assert is_configured()
    # Present but not a key: still a configuration problem, raised before any card.
    with pytest.raises(NotConfigured, match="not a service-account key"):
        GoogleWalletClient()


def test_ids_follow_googles_rules(google, card):
    object_id = object_id_for(card)
    assert object_id == f"{ISSUER_ID}.{card.public_id.hex}"
    assert class_id_for(card.company) == f"{ISSUER_ID}.company-{card.company.pk}"
    assert re.fullmatch(r"\d+\.[A-Za-z0-9._-]+", object_id)


def test_first_sync_creates_class_and_object(google, card):
    result, new_hash = sync(card)

    assert result == SYNCED
    assert re.fullmatch(r"[0-9a-f]{64}", new_hash)
    object_id = object_id_for(card)
    class_id = class_id_for(card.company)
    assert google.calls() == [
        ("PATCH", f"genericClass/{class_id}"),
        ("POST", "genericClass"),
        ("PATCH", f"genericObject/{object_id}"),
        ("POST", "genericObject"),
    ]
    assert google.classes == {
        class_id: {"id": class_id, "multipleDevicesAndHoldersAllowedStatus": "MULTIPLE_HOLDERS"}
    }
    stored = google.objects[object_id]
    assert stored["classId"] == class_id
    assert stored["state"] == "ACTIVE"
    assert value(stored["cardTitle"]) == "Acme"
    assert value(stored["header"]) == "Ada Lovelace"
    assert value(stored["subheader"]) == "Head of Engineering"
    assert stored["header"]["defaultValue"]["language"] == "en"  # the company's language
    assert stored["logo"]["sourceUri"]["uri"] == "https://cards.example.com/static/wallet/logo.png"
    assert re.fullmatch(r"#[0-9a-f]{6}", stored["hexBackgroundColor"])
    assert stored["barcode"] == {
        "type": "QR_CODE",
        "value": card.public_url,
        "alternateText": "Scan to open the card",
    }
    assert stored["genericType"] == "GENERIC_BUSINESS_CARD"
    texts = {module["id"]: module["body"] for module in stored["textModulesData"]}
    assert texts == {
        "phone": "+44 20 7946 0001",
        "mobile": "+44 7700 900001",
        "email": "ada@example.com",
        "website": "https://example.com/ada",
        "address": "1 Analytical Way\nLondon",
    }
    uris = {link["id"]: link["uri"] for link in stored["linksModuleData"]["uris"]}
    assert uris == {
        "phone": "tel:+442079460001",
        "mobile": "tel:+447700900001",
        "email": "mailto:ada@example.com",
        "website": "https://example.com/ada",
        "card": card.public_url,
    }


def test_changed_card_is_patched_and_cleared_fields_disappear(google, card):
    _, first_hash = sync(card)
    card.job_title = ""
    card.phone = "+1 555 0100"
    card.save()
    before = len(google.requests)

    result, second_hash = sync(BusinessCard.objects.get(pk=card.pk), first_hash)

    assert result == "synced"
    assert second_hash != first_hash
    object_id = object_id_for(card)
    # The class is as last sent (no request) and the object is patched in place.
    assert google.calls()[before:] == [("PATCH", f"genericObject/{object_id}")]
    stored = google.objects[object_id]
    assert "subheader" not in stored
    assert {m["id"]: m["body"] for m in stored["textModulesData"]}["phone"] == "+1 555 0100"


def test_unchanged_card_makes_no_request(google, card):
    _, card_hash = sync(card)
    assert card_hash == body_hash(build_object(card))
    api_calls, tokens = len(google.requests), google.token_requests

    assert sync(card, card_hash) == ("unchanged", card_hash)
    assert (len(google.requests), google.token_requests) == (api_calls, tokens)


def test_one_token_and_one_class_request_per_company(google, company):
    cards = [
        BusinessCard.objects.create(company=company, full_name=f"Person {n}", email=f"p{n}@x.io")
        for n in range(5)
    ]
    with GoogleWalletClient() as client:
        results = [client.sync_card(card, "")[0] for card in cards]

    assert results == ["synced"] * 5
    assert google.token_requests == 1
    assert google.token_errors == []
    assert len(google.calls("PATCH", "genericClass")) == 1
    assert len(google.calls("POST", "genericClass")) == 1
    assert len(google.objects) == 5
    # A later batch in the same process reuses the still-valid token.
    cards[0].full_name = "Renamed"
    sync(cards[0])
    assert google.token_requests == 1


def test_class_created_by_someone_else_meanwhile_is_fine(google, card):
    # Another worker inserted the class between our PATCH (404) and our POST (409).
    class_id = class_id_for(card.company)
    google.classes[class_id] = {"id": class_id}
    google.fail_next("PATCH", "genericClass", 404)

    assert sync(card)[0] == "synced"

    calls = [call[0] for call in google.calls()]
    assert calls == ["PATCH", "POST", "PATCH", "PATCH", "POST"]
    assert google.classes[class_id]["multipleDevicesAndHoldersAllowedStatus"] == "MULTIPLE_HOLDERS"
    assert google.objects[object_id_for(card)]["classId"] == class_id


def test_insert_conflict_patches_again(google, card):
    # Another worker inserted the object between our PATCH (404) and our POST (409).
    sync(card)
    object_id = object_id_for(card)
    google.objects[object_id]["header"] = {"defaultValue": {"language": "en-US", "value": "Old"}}
    google.fail_next("PATCH", "genericObject", 404)
    card.full_name = "Ada King"
    before = len(google.requests)

    assert sync(card)[0] == "synced"

    assert google.calls()[before:] == [
        ("PATCH", f"genericObject/{object_id}"),
        ("POST", "genericObject"),
        ("PATCH", f"genericObject/{object_id}"),
    ]
    assert value(google.objects[object_id]["header"]) == "Ada King"


def test_insert_sends_no_nulls(google, company):
    bare = BusinessCard.objects.create(company=company, full_name="No Title")
    sync(bare)
    inserted = [body for method, path, body in google.requests if path == "genericObject"]
    assert inserted and None not in inserted[0].values()
    assert "subheader" not in inserted[0]


def test_rate_limit_is_transient_with_retry_after(google, card):
    google.fail_next("PATCH", "genericObject", 429, "Quota exceeded", {"Retry-After": "7"})

    with pytest.raises(TransientError) as caught:
        sync(card)

    assert caught.value.retry_after == 7
    assert "429" in str(caught.value) and "Quota exceeded" in str(caught.value)


def test_retry_after_as_http_date(google, card):
    google.fail_next(
        "PATCH",
        "genericClass",
        503,
        "Backend Error",
        {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"},
    )

    with pytest.raises(TransientError) as caught:
        sync(card)

    # A date in the past means "now", not a negative wait.
    assert caught.value.retry_after == 0


def test_server_error_is_transient(google, card):
    google.fail_next("POST", "genericObject", 500, "Internal error encountered.")

    with pytest.raises(TransientError, match="Internal error encountered") as caught:
        sync(card)

    assert caught.value.retry_after is None


def test_client_errors_are_permanent_with_googles_message(google, card):
    message = "Invalid value for field 'hexBackgroundColor'"
    google.fail_next("PATCH", "genericObject", 400, message)

    with pytest.raises(PermanentError) as caught:
        sync(card)

    assert message in str(caught.value)
    assert "HTTP 400" in str(caught.value)
    assert not isinstance(caught.value, TransientError)


def test_permission_denied_is_a_refusal_naming_the_console_step(google, card):
    message = "Service account email address did not have edit access on the issuer"
    google.fail_next("PATCH", "genericObject", 403, message)

    with pytest.raises(ProviderError) as caught:
        sync(card)

    assert message in str(caught.value) and "HTTP 403" in str(caught.value)
    assert "Google Pay & Wallet Console" in str(caught.value)


def test_a_401_that_persists_after_a_token_refresh_is_a_refusal(google, card):
    sync(card)  # a token is fetched and cached
    tokens_before = google.token_requests
    google.fail_next("PATCH", "genericObject", 401, "Request had invalid credentials.", times=5)

    with pytest.raises(ProviderError) as caught:
        sync(card)

    # google-auth fetched a new token and sent the PATCH again before giving up.
    assert google.token_requests > tokens_before
    assert len(google.calls("PATCH", "genericObject")) >= 3  # 1 earlier sync + 2 tries
    assert "HTTP 401, also with a new token" in str(caught.value)
    assert "GOOGLE_WALLET_SERVICE_ACCOUNT_FILE" in str(caught.value)


def test_timeout_is_transient(google, card, settings):
    settings.GOOGLE_WALLET_TIMEOUT = 0.3
    google.fail_next("PATCH", "genericClass", 200, delay=1.5)

    with pytest.raises(TransientError, match="did not answer"):
        sync(card)


def test_unreachable_api_is_transient(google, card, settings):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    settings.GOOGLE_WALLET_BASE_URL = f"http://127.0.0.1:{closed_port}/walletobjects/v1"

    # Unreachable: the wallet batch pauses rather than spending every card's attempt.
    with pytest.raises(Unreachable, match="Cannot reach Google Wallet"):
        sync(card)


def test_token_signed_by_unknown_key_is_a_refusal(google, card, tmp_path, settings):
    # A key the token endpoint does not know, e.g. a revoked or mistyped key file.
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    _, other_key_path, _ = make_service_account(other_dir)
    settings.GOOGLE_WALLET_SERVICE_ACCOUNT_FILE = str(other_key_path)

    with pytest.raises(ProviderError, match="invalid_grant: Signature verification failed"):
        sync(card)

    assert google.token_errors and google.requests == []


def test_unreachable_token_endpoint_is_transient(google, card, settings):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    settings.GOOGLE_WALLET_TOKEN_URI = f"http://127.0.0.1:{closed_port}/token"

    with pytest.raises(TransientError):
        sync(card)

    assert google.requests == []


def test_key_given_as_json_setting(google, card, settings):
    settings.GOOGLE_WALLET_SERVICE_ACCOUNT_JSON = google.key_path.read_text()
    settings.GOOGLE_WALLET_SERVICE_ACCOUNT_FILE = ""

    assert sync(card)[0] == "synced"


def check_ids():
    return [message.id for message in check_google_wallet_settings()]


def test_system_check(google, settings, tmp_path):
    assert check_ids() == []

    settings.GOOGLE_WALLET_SERVICE_ACCOUNT_FILE = str(tmp_path / "missing.json")
    assert check_ids() == ["wallet.google.E001"]

    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"client_email": "x@y", "private_key": "nope", "token_uri": "t"}))
    settings.GOOGLE_WALLET_SERVICE_ACCOUNT_FILE = str(broken)
    assert check_ids() == ["wallet.google.E001"]

    settings.GOOGLE_WALLET_SERVICE_ACCOUNT_FILE = str(google.key_path)
    settings.GOOGLE_WALLET_ISSUER_ID = ""
    assert check_ids() == ["wallet.google.E002"]

    settings.GOOGLE_WALLET_SERVICE_ACCOUNT_FILE = ""
    settings.GOOGLE_WALLET_ISSUER_ID = ISSUER_ID
    assert check_ids() == ["wallet.google.W001"]

    settings.GOOGLE_WALLET_ISSUER_ID = ""
    assert check_ids() == []


def test_check_is_registered():
    from django.core.checks import registry

    assert check_google_wallet_settings in registry.registry.get_checks()


def test_an_idn_website_reaches_google_as_an_ascii_uri(google, card):
    card.website = "https://www.müller-söhne.de/team/jürgen"
    card.email = "jürgen@müller-söhne.de"
    card.save()

    sync(card)

    (stored,) = google.objects.values()
    links = {link["id"]: link["uri"] for link in stored["linksModuleData"]["uris"]}
    assert links["website"] == "https://www.xn--mller-shne-kcb9d.de/team/j%C3%BCrgen"
    assert links["email"] == "mailto:j%C3%BCrgen@xn--mller-shne-kcb9d.de"
    # Shown as typed: the text module is for people.
    texts = {module["id"]: module["body"] for module in stored["textModulesData"]}
    assert texts["website"] == card.website


def test_a_400_names_the_cards_field_google_refused(google, card, settings):
    from bulkjobs import reasons

    # Google's own shape: a google.rpc.BadRequest field violation in the error details.
    # (The loopback Google refuses an IRI so; the client never sends one, so the refusal
    # is scripted here.)
    error = google_error(400, "Invalid value for field 'linksModuleData.uris[2].uri'")
    error["error"]["details"] = [
        {
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{"field": "linksModuleData.uris[2].uri"}],
        }
    ]
    google.fail_next("PATCH", "genericObject", 400)
    google._script[-1].body = error

    with pytest.raises(PermanentError) as caught:
        sync(card)

    # Ada's links: phone, mobile, email, website, card: the third is the email.
    assert str(caught.value).startswith(
        "Google Wallet refused the card's email (linksModuleData.uris[2].uri): HTTP 400: "
    )
    reason = reasons.as_reason(str(caught.value))
    assert reason.code == "google_field_refused" and reason.params["field"] == "email"
    from django.utils import translation

    with translation.override("de"):
        words = reasons.render(reason.code, reason.params)
    assert "E-Mail" in words


def test_a_400_naming_a_field_in_its_message_only(google, card):
    google.fail_next("PATCH", "genericObject", 400, "Invalid value for field 'hexBackgroundColor'")
    with pytest.raises(PermanentError, match=r"refused the card's brand colour \(hexBackground"):
        sync(card)
