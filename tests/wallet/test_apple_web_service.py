"""The PassKit web service and the public pass download, through Django's test client,
and the bounds on what any holder of a (public) pass can make the service store or log."""

import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from django.utils.http import http_date

from cards.models import BusinessCard
from tests.wallet.conftest import PASS_TYPE_ID, issue_first_pass, verify_pkpass
from wallet.apple.store import store
from wallet.models import AppleDeviceRegistration, AppleLogWindow, CardWalletState

DEVICE = "device-library-1"


@pytest.fixture
def other_issued(apple, other_company):
    card = BusinessCard.objects.create(company=other_company, full_name="Hank Scorpio")
    state = CardWalletState.objects.for_card(card)
    issue_first_pass(state)
    return state


def auth(state_or_token):
    token = getattr(state_or_token, "apple_auth_token", state_or_token)
    return {"HTTP_AUTHORIZATION": f"ApplePass {token}"}


def register_url(state, device=DEVICE, pass_type=PASS_TYPE_ID):
    return reverse(
        "wallet:apple_registration",
        kwargs={"device_id": device, "pass_type_id": pass_type,
                "serial": state.apple_serial_number},
    )  # fmt: skip


def serials_url(device=DEVICE, pass_type=PASS_TYPE_ID):
    return reverse("wallet:apple_serials", kwargs={"device_id": device, "pass_type_id": pass_type})


def pass_url(state, pass_type=PASS_TYPE_ID):
    return reverse(
        "wallet:apple_latest_pass",
        kwargs={"pass_type_id": pass_type, "serial": state.apple_serial_number},
    )


def register(client, state, token=None, push_token="a" * 164, device=DEVICE):
    return client.post(
        register_url(state, device),
        data={"pushToken": push_token},
        content_type="application/json",
        **auth(token or state),
    )


def test_web_service_url_matches_the_routes(issued):
    # PassKit appends "v1/..." to webServiceURL; the default must land on our routes.
    assert pass_url(issued).startswith("/wallet/apple/v1/")


def test_register_201_then_200_and_push_token_update(client, issued):
    assert register(client, issued).status_code == 201
    assert register(client, issued, push_token="b" * 64).status_code == 200
    registration = AppleDeviceRegistration.objects.get()
    assert registration.push_token == "b" * 64
    assert registration.state == issued


def test_register_with_bad_token_is_401(client, issued):
    assert register(client, issued, token="wrong-token-wrong-token").status_code == 401
    response = client.post(register_url(issued), data={"pushToken": "x"},
                           content_type="application/json")  # fmt: skip
    assert response.status_code == 401
    assert not AppleDeviceRegistration.objects.exists()


def test_token_of_another_pass_is_refused(client, issued, other_issued):
    # Another company's pass token cannot register (or fetch) this pass, and vice versa.
    assert register(client, issued, token=other_issued.apple_auth_token).status_code == 401
    assert client.get(pass_url(issued), **auth(other_issued)).status_code == 401


def test_unknown_serial_looks_like_a_bad_token(client, issued):
    issued.apple_serial_number = "no-such-serial"
    assert register(client, issued).status_code == 401
    assert client.get(pass_url(issued), **auth(issued)).status_code == 401


def test_unknown_pass_type_is_404(client, issued):
    response = client.post(register_url(issued, pass_type="pass.other.type"),
                           data={"pushToken": "x"}, content_type="application/json",
                           **auth(issued))  # fmt: skip
    assert response.status_code == 404
    assert client.get(serials_url(pass_type="pass.other.type")).status_code == 404


def test_register_needs_a_push_token(client, issued):
    response = client.post(register_url(issued), data="{}", content_type="application/json",
                           **auth(issued))  # fmt: skip
    assert response.status_code == 400


def test_unregister(client, issued):
    register(client, issued)
    assert client.delete(register_url(issued)).status_code == 401
    assert AppleDeviceRegistration.objects.count() == 1
    assert client.delete(register_url(issued), **auth(issued)).status_code == 200
    assert not AppleDeviceRegistration.objects.exists()


def test_serials_updated_since_tag(client, issued, apple, company):
    second = CardWalletState.objects.for_card(
        BusinessCard.objects.create(company=company, full_name="Charles Babbage")
    )
    issue_first_pass(second)
    assert client.get(serials_url()).status_code == 204  # nothing registered yet
    register(client, issued)
    register(client, second)
    response = client.get(serials_url())
    assert response.status_code == 200
    body = response.json()
    assert sorted(body["serialNumbers"]) == sorted(
        [issued.apple_serial_number, second.apple_serial_number]
    )
    assert isinstance(body["lastUpdated"], str)
    tag = body["lastUpdated"]
    assert client.get(serials_url(), {"passesUpdatedSince": tag}).status_code == 204
    # Two passes updated after the tag: both are listed, not only the latest one.
    store(issued, issued.apple_pass_data, issued.apple_pass_hash)
    store(second, second.apple_pass_data, second.apple_pass_hash)
    body = client.get(serials_url(), {"passesUpdatedSince": tag}).json()
    assert sorted(body["serialNumbers"]) == sorted(
        [issued.apple_serial_number, second.apple_serial_number]
    )
    assert int(body["lastUpdated"]) > int(tag)
    assert client.get(serials_url(), {"passesUpdatedSince": "junk"}).status_code == 400


def test_serials_never_list_other_devices_or_companies(client, issued, other_issued):
    register(client, issued)
    register(client, other_issued, device="someone-elses-device")
    body = client.get(serials_url()).json()
    assert body["serialNumbers"] == [issued.apple_serial_number]


def test_latest_pass_last_modified_and_304(client, issued, chain_files, tmp_path):
    response = client.get(pass_url(issued), **auth(issued))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/vnd.apple.pkpass"
    assert response["Last-Modified"] == http_date(int(issued.apple_updated_at.timestamp()))
    verify_pkpass(response.content, chain_files, tmp_path)
    not_modified = client.get(
        pass_url(issued), HTTP_IF_MODIFIED_SINCE=response["Last-Modified"], **auth(issued)
    )
    assert not_modified.status_code == 304
    older = http_date(int(issued.apple_updated_at.timestamp()) - 60)
    assert client.get(pass_url(issued), HTTP_IF_MODIFIED_SINCE=older,
                      **auth(issued)).status_code == 200  # fmt: skip
    assert client.get(pass_url(issued), **auth("x" * 43)).status_code == 401


def post_log(client, body, address="192.0.2.1", content_type="application/json"):
    return client.post(
        reverse("wallet:apple_log"), data=body, content_type=content_type, REMOTE_ADDR=address
    )


def test_log_endpoint(client, apple, caplog, db):
    response = post_log(client, {"logs": ["Web service error for pass.x: boom"]})
    assert response.status_code == 200
    assert "Device log: Web service error for pass.x: boom" in caplog.messages
    assert post_log(client, "not json").status_code == 400


def test_public_download_issues_the_pass(client, apple, card, chain_files, tmp_path):
    response = client.get(reverse("wallet:apple_pass", kwargs={"public_id": card.public_id}))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/vnd.apple.pkpass"
    assert response["Content-Disposition"] == 'attachment; filename="ada-lovelace.pkpass"'
    files = verify_pkpass(response.content, chain_files, tmp_path)
    state = CardWalletState.objects.get(card=card)
    assert files["pass.json"]["serialNumber"] == state.apple_serial_number
    assert state.apple_pass_data and state.apple_content_hash
    # A later download of the changed card stores the new version and serves those
    # very bytes; the pushed hash stays behind, so the sync job still tells devices.
    pushed = state.apple_content_hash
    card.job_title = "Countess of Lovelace"
    card.save()
    response = client.get(reverse("wallet:apple_pass", kwargs={"public_id": card.public_id}))
    titles = [f["value"] for f in verify_pkpass(response.content, chain_files, tmp_path)[
        "pass.json"]["generic"]["secondaryFields"] if f["key"] == "title"]  # fmt: skip
    assert titles == ["Countess of Lovelace"]
    state.refresh_from_db()
    assert bytes(state.apple_pass_data) == response.content
    assert state.apple_content_hash == pushed != state.apple_pass_hash
    # An unchanged card's download serves the stored bytes again (no new version).
    again = client.get(reverse("wallet:apple_pass", kwargs={"public_id": card.public_id}))
    assert again.content == response.content and again["ETag"] == response["ETag"]


def test_public_download_404_when_not_configured(client, settings, card):
    settings.APPLE_PASS_CERT = settings.APPLE_PASS_P12 = ""
    url = reverse("wallet:apple_pass", kwargs={"public_id": card.public_id})
    assert client.get(url).status_code == 404


def test_card_page_buttons_only_for_configured_platforms(client, settings, card, apple):
    page = client.get(card.get_absolute_url()).content.decode()
    assert "Add to Apple Wallet" in page
    assert reverse("wallet:apple_pass", kwargs={"public_id": card.public_id}) in page
    assert "Add to Google Wallet" not in page
    settings.APPLE_TEAM_ID = ""
    page = client.get(card.get_absolute_url()).content.decode()
    assert "Add to Apple Wallet" not in page


# --- bounds: the pass's token is public, so everything a caller can make us do is bounded ---


@pytest.mark.parametrize(
    "push_token",
    ["x" * 64, "a" * 201, "", "ab cd", "a" * 64 + "\n", "٣" * 64, 123, None, ["a" * 64]],
    ids=["not-hex", "too-long", "empty", "space", "newline", "arabic-digits", "int", "null",
         "list"],
)  # fmt: skip
def test_register_refuses_a_push_token_that_is_not_hex_or_too_long(client, issued, push_token):
    response = register(client, issued, push_token=push_token)
    assert response.status_code == 400
    assert "hexadecimal" in response.content.decode()
    assert not AppleDeviceRegistration.objects.exists()


def test_register_accepts_the_longest_hex_push_token(client, issued):
    assert (
        register(client, issued, push_token="0123456789ABCDEF" * 12 + "abcdef01").status_code == 201
    )
    assert len(AppleDeviceRegistration.objects.get().push_token) == 200


@pytest.mark.parametrize(
    "body",
    ["not json", "[1, 2]", '"a string"', "[" * 3000, b"\xff\xfe{}", '{"pushToken": ["ab"]}'],
    ids=["not-json", "array", "string", "deeply-nested", "not-utf8", "token-not-a-string"],
)
def test_register_answers_400_to_malformed_bodies(client, issued, body):
    response = client.post(register_url(issued), data=body, content_type="application/json",
                           **auth(issued))  # fmt: skip
    assert response.status_code == 400
    assert not AppleDeviceRegistration.objects.exists()


def test_register_answers_413_to_an_oversize_body(client, issued):
    # The 2.4 MB push token of the report, and a valid token padded just over 4 KiB.
    assert register(client, issued, push_token="a" * 2_400_000).status_code == 413
    padded = json.dumps({"pushToken": "a" * 64}) + " " * 4096
    response = client.post(register_url(issued), data=padded, content_type="application/json",
                           **auth(issued))  # fmt: skip
    assert response.status_code == 413
    assert not AppleDeviceRegistration.objects.exists()


def test_register_refuses_an_overlong_device_id(client, issued):
    assert register(client, issued, device="d" * 256).status_code == 400
    assert register(client, issued, device="d" * 255).status_code == 201


def test_devices_per_pass_are_capped(client, issued, other_issued, settings):
    settings.APPLE_MAX_DEVICES_PER_PASS = 3
    for n in range(3):
        assert register(client, issued, device=f"device-{n}").status_code == 201
    refused = register(client, issued, device="device-3")
    assert refused.status_code == 429
    assert "remove it from a device you no longer use" in refused.content.decode()
    assert issued.registrations.count() == 3
    # A registered device may still update its push token; other passes are not affected.
    assert register(client, issued, device="device-0", push_token="b" * 64).status_code == 200
    assert issued.registrations.get(device_library_id="device-0").push_token == "b" * 64
    assert register(client, other_issued, device="device-3").status_code == 201
    # A device that unregisters frees its slot.
    client.delete(register_url(issued, device="device-1"), **auth(issued))
    assert register(client, issued, device="device-3").status_code == 201


@pytest.mark.parametrize("since", ["9" * 30, "-1", "9" * 5000, "1e5"])
def test_serials_never_500_on_odd_tags(client, issued, since):
    register(client, issued)
    response = client.get(serials_url(), {"passesUpdatedSince": since})
    assert response.status_code in (200, 204, 400)


def test_log_escapes_what_it_logs(client, apple, caplog, db):
    entry = "boom\n2026-01-01 ERROR forged line\r\x1b[31m red\u2028sep\\n tab\there"
    assert post_log(client, {"logs": [entry, "second"]}).status_code == 200
    assert caplog.messages == [
        "Device log: boom\\n2026-01-01 ERROR forged line\\r\\x1b[31m red\\u2028sep\\\\n tab\\there",
        "Device log: second",
    ]


def test_log_cuts_long_entries(client, apple, caplog, db):
    assert post_log(client, {"logs": ["é" * 2500]}).status_code == 200
    assert caplog.messages == [f"Device log: {'é' * 1000}... (1500 more characters)"]


@pytest.mark.parametrize(
    "body, status",
    [
        ({"logs": ["x" * 17_000]}, 413),
        ({"logs": ["entry"] * 51}, 413),
        ("not json", 400),
        ("[" * 3000, 400),
        ({"logs": "one string"}, 400),
        ({"logs": ["fine", 42]}, 400),
        (["a list"], 400),
    ],
    ids=["body-over-16k", "51-entries", "not-json", "deeply-nested", "logs-not-a-list",
         "entry-not-a-string", "not-an-object"],
)  # fmt: skip
def test_log_refuses_oversize_and_malformed_bodies(client, apple, caplog, db, body, status):
    assert post_log(client, body).status_code == status
    assert not [m for m in caplog.messages if m.startswith("Device log")]


def test_log_rate_is_per_client(client, apple, caplog, db, settings):
    settings.APPLE_LOG_REQUESTS_PER_MINUTE = 3
    for _ in range(3):
        assert post_log(client, {"logs": ["ok"]}, address="192.0.2.1").status_code == 200
    limited = post_log(client, {"logs": ["over"]}, address="192.0.2.1")
    assert limited.status_code == 429
    assert "try again in a minute" in limited.content.decode()
    assert "Device log: over" not in caplog.messages
    assert post_log(client, {"logs": ["other"]}, address="192.0.2.2").status_code == 200
    # An IPv6 host holds a whole /64: its addresses share one rate.
    for n in range(3):
        assert post_log(client, {"logs": []}, address=f"2001:db8::{n + 1}").status_code == 200
    assert post_log(client, {"logs": []}, address="2001:db8::ffff").status_code == 429
    assert post_log(client, {"logs": []}, address="2001:db8:0:1::1").status_code == 200


def test_log_rate_window_moves_on_and_quiet_clients_are_dropped(db):
    start = timezone.now().replace(second=0, microsecond=0)
    assert AppleLogWindow.objects.take("192.0.2.1", 2, now=start)
    assert AppleLogWindow.objects.take("192.0.2.1", 2, now=start + timedelta(seconds=30))
    assert not AppleLogWindow.objects.take("192.0.2.1", 2, now=start + timedelta(seconds=59))
    assert AppleLogWindow.objects.take("192.0.2.1", 2, now=start + timedelta(seconds=60))
    assert not AppleLogWindow.objects.take("192.0.2.1", 0, now=start + timedelta(hours=5))
    # A new client's first request drops the rows of clients quiet for over an hour.
    later = start + timedelta(hours=2)
    assert AppleLogWindow.objects.take("192.0.2.9", 2, now=later)
    assert list(AppleLogWindow.objects.values_list("client", flat=True)) == ["192.0.2.9"]
