"""Wallet fixtures: an Apple-shaped certificate chain made at test time, Apple settings
pointing at it, a loopback HTTP/2 APNs server, and pkpass verification with openssl."""

import hashlib
import json
import shutil
import subprocess
import zipfile
from io import BytesIO

import pytest

from tests.wallet.apns_server import FakeApns, make_server_certificate
from wallet.apple import apns, pkpass, store
from wallet.apple.devcerts import make_chain, write_chain
from wallet.models import CardWalletState

TEAM_ID = "TEAMID1234"
PASS_TYPE_ID = "pass.com.example.test-card"
APNS_KEY_ID = "KEYID12345"


def issue_first_pass(state):
    """Build, sign and store a card's first pass, as its first download does (nothing to
    push: no device has it yet)."""
    store.current_pass(state, state.card)


def signed_pass(card, state, material=None):
    """The card's .pkpass bytes: built, signed and zipped as wallet/apple/store.py does,
    but not stored."""
    built = pkpass.build(card, state)
    return pkpass.package(built, pkpass.sign(built.manifest, material))


@pytest.fixture(scope="session")
def chain():
    return make_chain(TEAM_ID, PASS_TYPE_ID)


@pytest.fixture(scope="session")
def chain_files(chain, tmp_path_factory):
    directory = tmp_path_factory.mktemp("wallet-certs")
    paths = write_chain(chain, directory)
    # A TLS certificate for the loopback APNs server, issued by the same test root.
    paths["server_cert"], paths["server_key"] = make_server_certificate(chain, directory)
    return paths


def apple_settings(chain_files, apns=True):
    """The settings, by name, that sign passes with the test chain (write_chain()'s files
    of make_chain(TEAM_ID, PASS_TYPE_ID)) and, with `apns`, push with its APNs key and
    trust its root; the APNs server's URL is the caller's."""
    names = {
        "APPLE_PASS_CERT": str(chain_files["pass_cert"]),
        "APPLE_PASS_KEY": str(chain_files["pass_key"]),
        "APPLE_PASS_P12": "",
        "APPLE_WWDR_CERT": str(chain_files["wwdr"]),
        "APPLE_TEAM_ID": TEAM_ID,
        "APPLE_PASS_TYPE_ID": PASS_TYPE_ID,
    }
    if apns:
        names.update(
            APNS_KEY_FILE=str(chain_files["apns_key"]),
            APNS_KEY_ID=APNS_KEY_ID,
            APNS_CA_FILE=str(chain_files["root"]),
        )
    return names


@pytest.fixture
def apple(settings, chain_files):
    """Apple Wallet configured with the test chain; APNs token auth, not yet reachable."""
    for name, value in apple_settings(chain_files).items():
        setattr(settings, name, value)
    settings.APPLE_WEB_SERVICE_URL = "https://cards.example.com/wallet/apple/"
    settings.APNS_BASE_URL = "https://127.0.0.1:9"  # nothing listens: set by apns_server
    settings.APNS_TIMEOUT = 5.0
    yield settings
    apns.close_shared_client()


@pytest.fixture
def apns_server(apple, chain_files):
    with FakeApns(str(chain_files["server_cert"]), str(chain_files["server_key"])) as server:
        apple.APNS_BASE_URL = server.url
        yield server
        apns.close_shared_client()


@pytest.fixture
def issued(apple, card):
    """Ada's pass, issued (built and stored) as the first download does."""
    state = CardWalletState.objects.for_card(card)
    issue_first_pass(state)
    return state


@pytest.fixture(autouse=True)
def google_off(settings):
    """Google Wallet off unless a test configures it (the Google fixtures do)."""
    settings.GOOGLE_WALLET_ISSUER_ID = ""


def unzip(data):
    with zipfile.ZipFile(BytesIO(bytes(data))) as archive:
        for info in archive.infolist():
            # Files at the archive root: Wallet does not look inside other folders than
            # the localizations' <language>.lproj/.
            folder, _, name = info.filename.rpartition("/")
            assert folder == "" or (folder.endswith(".lproj") and "/" not in folder), name
        return {name: archive.read(name) for name in archive.namelist()}


def verify_pkpass(data, chain_files, tmp_path):
    """Check a .pkpass like a device would; returns its files (pass.json parsed).

    The manifest lists exactly the other files with correct SHA-1s, and openssl verifies
    the detached signature over the manifest bytes up to the test root.
    """
    files = unzip(data)
    assert {"pass.json", "manifest.json", "signature", "icon.png"} <= set(files)
    manifest = json.loads(files["manifest.json"])
    assert set(manifest) == set(files) - {"manifest.json", "signature"}
    for name, digest in manifest.items():
        assert hashlib.sha1(files[name]).hexdigest() == digest, name
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed; cannot verify the PKCS#7 signature")
    (tmp_path / "manifest.json").write_bytes(files["manifest.json"])
    (tmp_path / "signature").write_bytes(files["signature"])
    result = subprocess.run(
        [
            openssl, "smime", "-verify", "-binary", "-inform", "DER",
            "-in", str(tmp_path / "signature"),
            "-content", str(tmp_path / "manifest.json"),
            "-CAfile", str(chain_files["root"]),
            "-purpose", "any", "-out", "/dev/null",
        ],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Verification successful" in result.stderr
    files["pass.json"] = json.loads(files["pass.json"])
    return files


@pytest.fixture
def google(tmp_path, settings):
    """Google Wallet configured against a loopback server; `key_path` is its service
    account key file."""
    from tests.wallet.google_server import (
        FakeGoogleWallet,
        make_service_account,
        point_settings_at,
    )

    info, key_path, public_key = make_service_account(tmp_path)
    with FakeGoogleWallet(public_key, info["client_email"]) as fake:
        point_settings_at(settings, fake, key_path)
        fake.key_path = key_path
        yield fake
