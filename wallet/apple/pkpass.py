"""Build and sign an Apple Wallet pass (.pkpass) for a business card.

A .pkpass is a ZIP of pass.json, the images and the en.lproj/ and de.lproj/ pass.strings,
plus manifest.json (SHA-1 of every other file, by path) and `signature`, a detached
PKCS#7 (CMS, DER) signature over the exact manifest bytes, made with the Pass Type ID certificate and carrying the
WWDR intermediate. The manifest doubles as the content fingerprint: two builds of an
unchanged card give the same manifest, while the signature differs (signing time).
"""

import codecs
import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from functools import lru_cache

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from django.utils import translation
from django.utils.html import escape
from django.utils.translation import gettext as _
from PIL import Image

from wallet import branding
from wallet.languages import pass_languages

from . import conf

MIME_TYPE = "application/vnd.apple.pkpass"

# Colours and images come from wallet/branding.py: the company's brand colour (the same
# on Google's passes), its logo sized to its content, thumbnails cropped on purpose.


@dataclass(frozen=True)
class BuiltPass:
    files: dict  # name -> bytes, without manifest.json and signature
    manifest: bytes

    @property
    def content_hash(self):
        return hashlib.sha256(self.manifest).hexdigest()


def _rgb(colour):
    return "rgb({},{},{})".format(*colour)


def labels():
    """The pass's words in the active language, by id (call under translation.override)."""
    return {
        "name": _("NAME"),
        "title": _("TITLE"),
        "company": _("COMPANY"),
        "phone": _("PHONE"),
        "email": _("EMAIL"),
        "mobile": _("MOBILE"),
        "website": _("WEBSITE"),
        "address": _("ADDRESS"),
        "card": _("CARD"),
        "open": _("Open the card"),
        "scan": _("Scan to open the card"),
        "voided": _("This card was deleted."),
    }


def _change_message(label):
    # "%@" is Wallet's placeholder for the new value.
    return _("%(label)s changed to %%@") % {"label": label.title()}


# The same few files for every pass of a language: built once per process, not on every
# build (each device refresh and download builds the pass). Callers only read the dict.
@lru_cache(maxsize=8)
def pass_strings(company_language):
    """{"en.lproj/pass.strings": bytes, ...}: each language's words keyed by the words
    pass.json carries (the company's language), which is how Wallet looks them up.

    A device shows the localization matching its preferred languages, English when none
    matches; pass.json itself holds the company's language. UTF-16 with a byte order
    mark, the encoding of Apple's own strings files, which every iOS version reads.
    """
    with translation.override(company_language):
        keys = labels()
        key_messages = {name: _change_message(label) for name, label in keys.items()}
    files = {}
    for language in pass_languages():
        with translation.override(language):
            words = labels()
            messages = {name: _change_message(label) for name, label in words.items()}
        entries = {}
        for name in keys:
            entries[keys[name]] = words[name]
            entries[key_messages[name]] = messages[name]
        lines = [f'"{_escape(key)}" = "{_escape(value)}";' for key, value in entries.items()]
        text = "\n".join(lines) + "\n"
        # Little-endian with its byte order mark spelt out, so every host builds the
        # same bytes (and so the same version) for the same card.
        files[f"{language}.lproj/pass.strings"] = codecs.BOM_UTF16_LE + text.encode("utf-16-le")
    return files


def _escape(text):
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _field(key, label, value):
    # Without changeMessage the device updates silently; with it the holder sees what
    # changed ("%@" is replaced by the new value).
    return {"key": key, "label": label, "value": value, "changeMessage": _change_message(label)}


def pass_json(card, state, voided=False):
    """The pass.json dictionary for a card with its wallet state (serial, token); the
    words are in the company's language. A voided pass is the deleted card's last pass."""
    with translation.override(card.company.language):
        return _pass_json(card, state, labels(), voided)


def _pass_json(card, state, words, voided):
    company = card.company.name
    background, foreground, label = branding.colours(card.company)
    primary = [_field("name", words["name"], card.full_name)]
    secondary = []
    # The company's name is on the front once, beside its logo (logoText).
    if card.job_title:
        secondary.append(_field("title", words["title"], card.job_title))
    # Numbers parsed in the company's country (cards/phones.py), shown as people write
    # them there; the back links a dialable one to its E.164 tel: URI.
    phone, mobile = card.phone_number, card.mobile_number
    auxiliary = []
    # One number fits the front: the phone, else the mobile, each under its own label.
    if phone:
        auxiliary.append(_field("phone", words["phone"], str(phone)))
    elif mobile:
        auxiliary.append(_field("mobile", words["mobile"], str(mobile)))
    if card.email:
        auxiliary.append(_field("email", words["email"], card.email))
    back = []
    if voided:
        back.append({"key": "back-voided", "label": words["card"], "value": words["voided"]})
    if card.email:
        back.append(_field("back-email", words["email"], card.email))
    for key, number in (("phone", phone), ("mobile", mobile)):
        if number:
            field = _field(f"back-{key}", words[key], str(number))
            if number.dialable:
                field["attributedValue"] = f'<a href="{number.tel_uri}">{escape(number)}</a>'
            back.append(field)
    if card.website:
        back.append(_field("back-website", words["website"], card.website))
    if card.address:
        back.append(_field("back-address", words["address"], card.address))
    if not voided:
        back.append(
            {
                "key": "back-card",
                "label": words["card"],
                "value": card.public_url,
                "attributedValue": f'<a href="{card.public_url}">{words["open"]}</a>',
            }
        )
    data = {
        "formatVersion": 1,
        "passTypeIdentifier": conf.pass_type_id(),
        "teamIdentifier": conf.team_id(),
        "serialNumber": state.apple_serial_number,
        "authenticationToken": state.apple_auth_token,
        "webServiceURL": conf.web_service_url(),
        "organizationName": company,
        "description": _("Business card of %(name)s (%(company)s)")
        % {"name": card.full_name, "company": company},
        "logoText": company,
        "backgroundColor": _rgb(background),
        "foregroundColor": _rgb(foreground),
        "labelColor": _rgb(label),
        # The public URL keeps the QR code small and always shows the current card.
        "barcodes": [
            {
                "format": "PKBarcodeFormatQR",
                "message": card.public_url,
                "messageEncoding": "iso-8859-1",
                "altText": words["scan"],
            }
        ],
        "generic": {
            "primaryFields": primary,
            "secondaryFields": secondary,
            "auxiliaryFields": auxiliary,
            "backFields": back,
        },
    }
    if voided:
        # Wallet greys the pass out and stops offering its barcode; the card page it
        # pointed to is gone.
        data["voided"] = True
        del data["barcodes"]
    return data


def company_images(company):
    """Icon and logo PNGs at @1x, @2x and @3x (wallet/branding.py, cached per company look)."""
    return branding.apple_images(
        company.name, branding.brand_color(company), company.logo.name if company.logo else ""
    )


def photo_thumbnails(card):
    """Thumbnail PNGs from the card's photo; empty when there is none or it cannot be read."""
    if not card.photo:
        return {}
    try:
        storage = card.photo.storage
        return _thumbnails(storage, getattr(storage, "location", ""), card.photo.name)
    except (OSError, ValueError):
        return {}


@lru_cache(maxsize=128)
def _thumbnails(storage, location, name):
    """Cached by file name: every refresh and download builds the pass to see whether it
    changed, and decoding a photo is the slow part. A new photo gets a new name (Django's
    storage does not overwrite files), so a cached entry never goes stale. Failures raise
    and so are not cached."""
    with storage.open(name, "rb") as handle:
        source = Image.open(handle)
        source.load()
    return branding.thumbnails(source)


def build(card, state, voided=False):
    """pass.json, the localizations and images for the card, with the manifest; not
    signed yet. The manifest lists every file, the .lproj ones by their path."""
    # Indented JSON on purpose: it contains newlines, which only verify because the
    # signature is made in binary mode (see sign()).
    files = {
        "pass.json": json.dumps(
            pass_json(card, state, voided), indent=2, ensure_ascii=False
        ).encode(),
    }
    files.update(pass_strings(card.company.language))
    files.update(company_images(card.company))
    files.update(photo_thumbnails(card))
    manifest = json.dumps(
        {name: hashlib.sha1(data).hexdigest() for name, data in sorted(files.items())},  # noqa: S324  (Apple's manifest format is SHA-1)
        indent=2,
    ).encode()
    return BuiltPass(files=files, manifest=manifest)


def sign(manifest, material=None):
    """Detached PKCS#7 signature (DER) of the manifest bytes.

    Binary: without it the manifest's LF would be hashed as CRLF and devices would reject
    any manifest with a newline. No NoAttributes: Wallet wants the signingTime attribute.
    """
    material = material or conf.signing_material()
    return (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(manifest)
        .add_signer(material.certificate, material.private_key, hashes.SHA256())
        .add_certificate(material.wwdr)
        .sign(
            serialization.Encoding.DER,
            [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary],
        )
    )


def package(built, signature):
    """The .pkpass ZIP bytes: every file at the archive root."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in built.files.items():
            # PNGs are compressed already; deflating them again only costs time.
            method = zipfile.ZIP_STORED if name.endswith(".png") else zipfile.ZIP_DEFLATED
            archive.writestr(name, data, compress_type=method)
        archive.writestr("manifest.json", built.manifest)
        archive.writestr("signature", signature)
    return out.getvalue()
