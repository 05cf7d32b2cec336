"""The "Add to Google Wallet" save link: an RS256 JWT that only references the object."""

import jwt
import pytest

from tests.wallet.google_server import make_service_account
from wallet.errors import NotConfigured
from wallet.google.links import save_link

ISSUER_ID = "3388000000012345678"
SAVE_PREFIX = "https://pay.google.com/gp/v/save/"


@pytest.fixture
def service_account(tmp_path, settings):
    info, key_path, public_key = make_service_account(tmp_path)
    settings.GOOGLE_WALLET_ISSUER_ID = ISSUER_ID
    settings.GOOGLE_WALLET_SERVICE_ACCOUNT_FILE = str(key_path)
    settings.GOOGLE_WALLET_SERVICE_ACCOUNT_JSON = ""
    settings.GOOGLE_WALLET_ORIGINS = ["https://cards.example.com", "https://www.example.com"]
    return info, public_key


def decode(url, public_key):
    assert url.startswith(SAVE_PREFIX)
    token = url[len(SAVE_PREFIX) :]
    return jwt.get_unverified_header(token), jwt.decode(
        token, public_key, algorithms=["RS256"], audience="google"
    )


def test_save_link_is_signed_by_the_service_account(service_account, card):
    info, public_key = service_account

    url = save_link(card)

    header, claims = decode(url, public_key)
    assert header == {"alg": "RS256", "typ": "JWT", "kid": info["private_key_id"]}
    assert claims["iss"] == info["client_email"]
    assert claims["aud"] == "google"
    assert claims["typ"] == "savetowallet"
    assert isinstance(claims["iat"], int)
    assert claims["origins"] == ["https://cards.example.com", "https://www.example.com"]
    # Only the object reference: the object itself is created through the REST API.
    assert claims["payload"] == {"genericObjects": [{"id": f"{ISSUER_ID}.{card.public_id.hex}"}]}
    assert set(claims) == {"iss", "aud", "typ", "iat", "origins", "payload"}
    # Google's own converter refuses JWTs over 1800 characters.
    assert len(url) < 1000


def test_save_link_not_verifiable_with_another_key(service_account, card, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    _, _, other_public_key = make_service_account(other)

    with pytest.raises(jwt.InvalidSignatureError):
        decode(save_link(card), other_public_key)


def test_origins_default_to_site_url(service_account, card, settings):
    settings.GOOGLE_WALLET_ORIGINS = []
    settings.SITE_URL = "https://bizcards.example.org"

    _, claims = decode(save_link(card), service_account[1])

    assert claims["origins"] == ["https://bizcards.example.org"]


def test_save_link_needs_configuration(settings, card):
    settings.GOOGLE_WALLET_ISSUER_ID = ""
    settings.GOOGLE_WALLET_SERVICE_ACCOUNT_FILE = ""
    settings.GOOGLE_WALLET_SERVICE_ACCOUNT_JSON = ""

    with pytest.raises(NotConfigured, match="GOOGLE_WALLET_ISSUER_ID"):
        save_link(card)
