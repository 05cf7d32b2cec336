"""The PassKit web service and the public pass download, through Django's test client."""

import pytest
from django.urls import reverse
from django.utils.http import http_date

from cards.models import BusinessCard
from tests.wallet.conftest import PASS_TYPE_ID, verify_pkpass
from wallet.apple.views import issue_first_pass
from wallet.models import AppleDeviceRegistration, CardWalletState

DEVICE = "device-library-1"


@pytest.fixture
def issued(apple, card):
    """Ada's pass, issued (built and stored) as the first download does."""
    state = CardWalletState.objects.for_card(card)
    issue_first_pass(state)
    return state


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
    issued.store_apple_pass(issued.apple_pass_data)
    second.store_apple_pass(second.apple_pass_data)
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


def test_log_endpoint(client, apple, caplog):
    response = client.post(
        reverse("wallet:apple_log"),
        data={"logs": ["Web service error for pass.x: boom"]},
        content_type="application/json",
    )
    assert response.status_code == 200
    assert "boom" in caplog.text
    assert client.post(reverse("wallet:apple_log"), data="not json",
                       content_type="application/json").status_code == 200  # fmt: skip


def test_public_download_issues_the_pass(client, apple, card, chain_files, tmp_path):
    response = client.get(reverse("wallet:apple_pass", kwargs={"public_id": card.public_id}))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/vnd.apple.pkpass"
    assert response["Content-Disposition"] == 'attachment; filename="ada-lovelace.pkpass"'
    files = verify_pkpass(response.content, chain_files, tmp_path)
    state = CardWalletState.objects.get(card=card)
    assert files["pass.json"]["serialNumber"] == state.apple_serial_number
    assert state.apple_pass_data and state.apple_content_hash
    # A later download shows the current card but leaves the stored pass for the sync
    # job, which must push the change to devices.
    card.job_title = "Countess of Lovelace"
    card.save()
    stored = bytes(state.apple_pass_data)
    response = client.get(reverse("wallet:apple_pass", kwargs={"public_id": card.public_id}))
    titles = [f["value"] for f in verify_pkpass(response.content, chain_files, tmp_path)[
        "pass.json"]["generic"]["secondaryFields"] if f["key"] == "title"]  # fmt: skip
    assert titles == ["Countess of Lovelace"]
    state.refresh_from_db()
    assert bytes(state.apple_pass_data) == stored


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
