"""Building and signing .pkpass files, verified with openssl against the test root."""

import io
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from django.core.files.base import ContentFile
from PIL import Image

from tests.wallet.conftest import PASS_TYPE_ID, TEAM_ID, signed_pass, unzip, verify_pkpass
from wallet.apple import conf, pkpass
from wallet.errors import NotConfigured
from wallet.models import CardWalletState


def test_pass_verifies_and_carries_the_card(apple, card, chain, chain_files, tmp_path):
    state = CardWalletState.objects.for_card(card)
    data = signed_pass(card, state)
    files = verify_pkpass(data, chain_files, tmp_path)
    doc = files["pass.json"]
    assert doc["formatVersion"] == 1
    assert doc["passTypeIdentifier"] == PASS_TYPE_ID
    assert doc["teamIdentifier"] == TEAM_ID
    assert doc["serialNumber"] == state.apple_serial_number
    assert doc["authenticationToken"] == state.apple_auth_token
    assert len(doc["authenticationToken"]) >= 16
    assert doc["webServiceURL"] == "https://cards.example.com/wallet/apple/"
    assert doc["organizationName"] == "Acme"
    assert doc["barcodes"][0]["format"] == "PKBarcodeFormatQR"
    assert doc["barcodes"][0]["message"] == card.public_url
    fields = {
        f["key"]: f
        for group in doc["generic"].values()
        for f in group
    }  # fmt: skip
    assert fields["name"]["value"] == "Ada Lovelace"
    assert fields["title"]["value"] == "Head of Engineering"
    # The company is named once on the front, beside its logo.
    assert "company" not in fields and doc["logoText"] == "Acme"
    assert fields["phone"]["value"] == "+44 20 7946 0001"
    assert fields["back-email"]["value"] == "ada@example.com"
    assert fields["back-website"]["value"] == "https://example.com/ada"
    assert all("%@" in f["changeMessage"] for f in fields.values() if "changeMessage" in f)
    # Icons are real PNGs of the documented sizes.
    for name, size in (("icon.png", 29), ("icon@2x.png", 58), ("icon@3x.png", 87)):
        assert Image.open(io.BytesIO(files[name])).size == (size, size)
    # Without an uploaded logo, a square mark of the initials: 50 points high, as wide,
    # leaving the rest of the 160 points for the company name.
    for name, size in (("logo.png", 50), ("logo@2x.png", 100), ("logo@3x.png", 150)):
        assert Image.open(io.BytesIO(files[name])).size == (size, size)
    # The signature carries the pass certificate and the WWDR intermediate.
    embedded = pkcs7.load_der_pkcs7_certificates(files["signature"])
    assert {c.subject for c in embedded} == {chain.pass_cert.subject, chain.wwdr_cert.subject}


def test_pass_json_with_newlines_still_verifies(apple, card, chain_files, tmp_path):
    # The address has a newline inside a value, and pass.json and the manifest are
    # indented: signing without Binary would hash CRLF and fail here.
    state = CardWalletState.objects.for_card(card)
    data = signed_pass(card, state)
    raw = unzip(data)
    assert b"\n" in raw["manifest.json"]
    assert b"\n" in raw["pass.json"]
    files = verify_pkpass(data, chain_files, tmp_path)
    address = [f for f in files["pass.json"]["generic"]["backFields"] if f["key"] == "back-address"]
    assert address[0]["value"] == "1 Analytical Way\nLondon"


def test_tampered_manifest_fails_verification(apple, card, chain_files, tmp_path):
    state = CardWalletState.objects.for_card(card)
    data = signed_pass(card, state)
    files = unzip(data)
    tampered = files["manifest.json"].replace(b"{", b"{ ", 1)
    (tmp_path / "m").write_bytes(tampered)
    (tmp_path / "s").write_bytes(files["signature"])
    import subprocess

    result = subprocess.run(
        ["openssl", "smime", "-verify", "-binary", "-inform", "DER", "-in", tmp_path / "s",
         "-content", tmp_path / "m", "-CAfile", chain_files["root"], "-purpose", "any",
         "-out", "/dev/null"],
        capture_output=True,
    )  # fmt: skip
    assert result.returncode != 0


def test_content_hash_is_stable_and_follows_the_card(apple, card):
    state = CardWalletState.objects.for_card(card)
    first = pkpass.build(card, state)
    assert pkpass.build(card, state).content_hash == first.content_hash
    card.job_title = "Countess"
    card.save()
    assert pkpass.build(card, state).content_hash != first.content_hash


def test_serial_and_token_are_generated_once(apple, card):
    state = CardWalletState.objects.for_card(card)
    again = CardWalletState.objects.for_card(card)
    assert again.pk == state.pk
    assert again.apple_serial_number == state.apple_serial_number
    assert again.apple_auth_token == state.apple_auth_token


def test_photo_becomes_the_thumbnail(apple, card, settings, tmp_path, chain_files):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    image = Image.new("RGB", (400, 300), (200, 10, 10))
    out = io.BytesIO()
    image.save(out, format="JPEG")
    card.photo.save("ada.jpg", ContentFile(out.getvalue()))
    state = CardWalletState.objects.for_card(card)
    data = signed_pass(card, state)
    files = verify_pkpass(data, chain_files, tmp_path)
    # Cropped to a square on purpose, at every scale (Wallet would crop on its own).
    for name, size in (("thumbnail.png", 90), ("thumbnail@2x.png", 180), ("thumbnail@3x.png", 270)):
        assert Image.open(io.BytesIO(files[name])).size == (size, size)
    # Thumbnails are cached per photo file; a new photo is a new file, so a new thumbnail.
    image = Image.new("RGB", (300, 300), (10, 200, 10))
    out = io.BytesIO()
    image.save(out, format="JPEG")
    card.photo.save("ada.jpg", ContentFile(out.getvalue()))
    thumbnail = Image.open(io.BytesIO(pkpass.build(card, state).files["thumbnail@2x.png"]))
    assert (
        thumbnail.getpixel((90, 90))[:3] == (10, 200, 10) or thumbnail.getpixel((90, 90))[1] > 150
    )


def test_p12_configuration_signs_too(apple, card, chain, chain_files, tmp_path):
    p12 = tmp_path / "pass.p12"
    p12.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"pass", chain.pass_key, chain.pass_cert, None,
            serialization.BestAvailableEncryption(b"s3cret"),
        )
    )  # fmt: skip
    apple.APPLE_PASS_CERT = ""
    apple.APPLE_PASS_KEY = ""
    apple.APPLE_PASS_P12 = str(p12)
    apple.APPLE_PASS_P12_PASSWORD = "s3cret"
    assert conf.missing_settings() == []
    state = CardWalletState.objects.for_card(card)
    data = signed_pass(card, state)
    verify_pkpass(data, chain_files, tmp_path)


def test_not_configured_names_the_settings(settings, card):
    settings.APPLE_PASS_CERT = settings.APPLE_PASS_KEY = settings.APPLE_PASS_P12 = ""
    settings.APPLE_WWDR_CERT = settings.APPLE_TEAM_ID = ""
    settings.APPLE_PASS_TYPE_ID = "pass.x"
    with pytest.raises(NotConfigured) as error:
        conf.signing_material()
    for name in ("APPLE_PASS_CERT", "APPLE_PASS_KEY", "APPLE_WWDR_CERT", "APPLE_TEAM_ID"):
        assert name in str(error.value)
    assert "APPLE_PASS_TYPE_ID" not in str(error.value)


def test_manifest_is_json_of_sha1_digests(apple, card):
    built = pkpass.build(card, CardWalletState.objects.for_card(card))
    manifest = json.loads(built.manifest)
    assert set(manifest) == set(built.files)
    assert all(len(digest) == 40 for digest in manifest.values())
