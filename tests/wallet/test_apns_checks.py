"""System checks of the APNs settings: the token key is parsed (PEM, EC, P-256), the key
and team ids have Apple's shape, and `check --deploy` warns about a sandbox APNs URL."""

from io import StringIO

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from wallet.checks import check_apns_environment, check_apns_settings


def ids(messages):
    return sorted(m.id for m in messages)


def write_key(tmp_path, key, name="AuthKey.p8"):
    path = tmp_path / name
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(path)


def test_apples_kind_of_key_passes(apple, tmp_path):
    # A freshly made P-256 key in PKCS#8 PEM, as Apple's .p8 files are.
    apple.APNS_KEY_FILE = write_key(tmp_path, ec.generate_private_key(ec.SECP256R1()))
    assert check_apns_settings() == []


def test_an_rsa_key_is_an_error_that_says_what_to_use(apple, tmp_path):
    apple.APNS_KEY_FILE = write_key(tmp_path, rsa.generate_private_key(65537, 2048))
    (message,) = check_apns_settings()
    assert message.id == "wallet.E007"
    assert "RSA" in message.msg and "EC P-256" in message.msg


def test_an_ec_key_on_another_curve_is_an_error(apple, tmp_path):
    apple.APNS_KEY_FILE = write_key(tmp_path, ec.generate_private_key(ec.SECP384R1()))
    (message,) = check_apns_settings()
    assert message.id == "wallet.E007" and "secp384r1" in message.msg and "P-256" in message.msg


@pytest.mark.parametrize(
    "content",
    [
        b"not a key at all\n",
        # The right key, but DER instead of PEM.
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    ],
)
def test_a_file_that_is_not_a_pem_key_is_an_error(apple, tmp_path, content):
    path = tmp_path / "AuthKey.p8"
    path.write_bytes(content)
    apple.APNS_KEY_FILE = str(path)
    (message,) = check_apns_settings()
    assert message.id == "wallet.E007" and "not a PEM private key" in message.msg
    assert ".p8" in message.msg


def test_an_unreadable_key_file_is_an_error(apple, tmp_path):
    apple.APNS_KEY_FILE = str(tmp_path / "missing.p8")
    (message,) = check_apns_settings()
    assert message.id == "wallet.E007" and "cannot read" in message.msg


@pytest.mark.parametrize("key_id", ["", "KEYID1234", "keyid12345", "KEYID-1234", "KEYID123456"])
def test_a_key_id_not_of_10_upper_case_letters_and_digits_is_an_error(apple, key_id):
    apple.APNS_KEY_ID = key_id
    (message,) = check_apns_settings()
    assert message.id == "wallet.E008"
    assert "APNS_KEY_ID" in message.msg
    assert ("empty" in message.msg) == (key_id == "")


def test_a_malformed_team_id_is_an_error(apple):
    apple.APPLE_TEAM_ID = "team-1"
    assert ids(check_apns_settings()) == ["wallet.E009"]


def test_a_key_id_without_key_file_is_a_warning(apple):
    apple.APNS_KEY_FILE = ""
    assert ids(check_apns_settings()) == ["wallet.W004"]
    apple.APNS_KEY_ID = ""
    assert check_apns_settings() == []


def test_an_unknown_environment_is_an_error(apple):
    apple.APNS_ENVIRONMENT = "staging"
    assert ids(check_apns_settings()) == ["wallet.E010"]


def test_a_bad_key_fails_manage_py_check(apple, tmp_path):
    apple.APNS_KEY_FILE = write_key(tmp_path, rsa.generate_private_key(65537, 2048))
    with pytest.raises(SystemCheckError, match="wallet.E007"):
        call_command("check", "--fail-level", "ERROR")


@pytest.mark.parametrize(
    "url,environment,warned",
    [
        ("https://api.sandbox.push.apple.com", "auto", True),
        ("https://127.0.0.1:2197", "auto", True),
        ("https://api.push.apple.com", "auto", False),
        ("https://api.push.apple.com:443", "auto", False),
        ("https://apns-relay.example.com", "production", False),
        ("https://api.push.apple.com", "sandbox", True),
    ],
)
def test_a_sandbox_url_is_a_deploy_warning(apple, url, environment, warned):
    apple.APNS_BASE_URL = url
    apple.APNS_ENVIRONMENT = environment
    messages = check_apns_environment()
    assert ids(messages) == (["wallet.W005"] if warned else [])
    if warned:
        assert url in messages[0].msg and "BadDeviceToken" in messages[0].msg


def test_the_sandbox_warning_is_only_a_deploy_check(apple):
    apple.APNS_BASE_URL = "https://api.sandbox.push.apple.com"
    out = StringIO()
    call_command("check", stdout=out, stderr=out)
    assert "wallet.W005" not in out.getvalue()
    out = StringIO()
    call_command("check", "--deploy", stdout=out, stderr=out)
    assert "wallet.W005" in out.getvalue()


def test_no_deploy_warning_when_apple_wallet_is_off(settings):
    settings.APPLE_TEAM_ID = ""
    settings.APNS_BASE_URL = "https://api.sandbox.push.apple.com"
    assert check_apns_environment() == []
