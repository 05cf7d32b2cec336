"""Build and sign an Apple Wallet pass (.pkpass) for a business card.

A .pkpass is a ZIP with its files at the root: pass.json, the images, manifest.json
(SHA-1 of every other file) and `signature`, a detached PKCS#7 (CMS, DER) signature
over the exact manifest bytes, made with the Pass Type ID certificate and carrying the
WWDR intermediate. The manifest doubles as the content fingerprint: two builds of an
unchanged card give the same manifest, while the signature differs (signing time).
"""

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from functools import lru_cache

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from PIL import Image, ImageDraw, ImageFont

from . import conf

MIME_TYPE = "application/vnd.apple.pkpass"

# Generic pass colours: dark blue card, white text.
BACKGROUND = (20, 40, 80)
FOREGROUND = (255, 255, 255)
LABEL = (190, 205, 230)

# Image name -> pixel size (Apple "Pass Design" sizes for the generic style).
ICON_SIZES = {"icon.png": 29, "icon@2x.png": 58, "icon@3x.png": 87}
LOGO_SIZES = {"logo.png": (160, 50), "logo@2x.png": (320, 100)}
THUMBNAIL_SIZES = {"thumbnail.png": 90, "thumbnail@2x.png": 180}


@dataclass(frozen=True)
class BuiltPass:
    files: dict  # name -> bytes, without manifest.json and signature
    manifest: bytes

    @property
    def content_hash(self):
        return hashlib.sha256(self.manifest).hexdigest()


def _rgb(colour):
    return "rgb({},{},{})".format(*colour)


def _field(key, label, value, change_message=None):
    field = {"key": key, "label": label, "value": value}
    # Without changeMessage the device updates silently; with it the holder sees what
    # changed ("%@" is replaced by the new value).
    field["changeMessage"] = change_message or f"{label.title()} changed to %@"
    return field


def pass_json(card, state):
    """The pass.json dictionary for a card with its wallet state (serial, token)."""
    company = card.company.name
    primary = [_field("name", "NAME", card.full_name)]
    secondary = []
    if card.job_title:
        secondary.append(_field("title", "TITLE", card.job_title))
    secondary.append(_field("company", "COMPANY", company))
    auxiliary = []
    if card.phone or card.mobile:
        auxiliary.append(_field("phone", "PHONE", card.phone or card.mobile))
    if card.email:
        auxiliary.append(_field("email", "EMAIL", card.email))
    back = []
    if card.email:
        back.append(_field("back-email", "EMAIL", card.email))
    if card.phone:
        back.append(_field("back-phone", "PHONE", card.phone))
    if card.mobile:
        back.append(_field("back-mobile", "MOBILE", card.mobile))
    if card.website:
        back.append(_field("back-website", "WEBSITE", card.website))
    if card.address:
        back.append(_field("back-address", "ADDRESS", card.address))
    back.append(
        {
            "key": "back-card",
            "label": "CARD",
            "value": card.public_url,
            "attributedValue": f'<a href="{card.public_url}">Open the card</a>',
        }
    )
    return {
        "formatVersion": 1,
        "passTypeIdentifier": conf.pass_type_id(),
        "teamIdentifier": conf.team_id(),
        "serialNumber": state.apple_serial_number,
        "authenticationToken": state.apple_auth_token,
        "webServiceURL": conf.web_service_url(),
        "organizationName": company,
        "description": f"Business card of {card.full_name} ({company})",
        "logoText": company,
        "backgroundColor": _rgb(BACKGROUND),
        "foregroundColor": _rgb(FOREGROUND),
        "labelColor": _rgb(LABEL),
        # The public URL keeps the QR code small and always shows the current card.
        "barcodes": [
            {
                "format": "PKBarcodeFormatQR",
                "message": card.public_url,
                "messageEncoding": "iso-8859-1",
                "altText": "Scan to open the card",
            }
        ],
        "generic": {
            "primaryFields": primary,
            "secondaryFields": secondary,
            "auxiliaryFields": auxiliary,
            "backFields": back,
        },
    }


def _initials(name):
    letters = [part[0] for part in name.split() if part[:1].isalnum()]
    return ("".join(letters[:2]) or "?").upper()


def _png(image):
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _font(size):
    # Pillow's bundled scalable font (needs FreeType, which Pillow's wheels include).
    return ImageFont.load_default(size=size)


@lru_cache(maxsize=256)
def company_images(company_name):
    """Icon and logo PNGs drawn from the company's name (companies have no uploaded logo).

    Cached: every card of a company shares them, and PNG encoding is the slow part.
    """
    images = {}
    initials = _initials(company_name)
    for name, size in ICON_SIZES.items():
        image = Image.new("RGB", (size, size), BACKGROUND)
        draw = ImageDraw.Draw(image)
        draw.text(
            (size / 2, size / 2),
            initials,
            fill=FOREGROUND,
            font=_font(int(size * 0.45)),
            anchor="mm",
        )
        images[name] = _png(image)
    for name, (width, height) in LOGO_SIZES.items():
        # Transparent background: Wallet draws the logo on the pass colour.
        image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
        draw = ImageDraw.Draw(image)
        draw.rounded_rectangle(
            (2, 2, height - 2, height - 2), radius=height // 5, fill=FOREGROUND + (255,)
        )
        draw.text(
            (height / 2, height / 2),
            initials,
            fill=BACKGROUND + (255,),
            font=_font(int(height * 0.42)),
            anchor="mm",
        )
        images[name] = _png(image)
    return images


def photo_thumbnails(card):
    """Thumbnail PNGs from the card's photo; empty when there is none or it cannot be read."""
    if not card.photo:
        return {}
    try:
        with card.photo.open("rb") as handle:
            source = Image.open(handle)
            source.load()
    except (OSError, ValueError):
        return {}
    source = source.convert("RGB")
    images = {}
    for name, size in THUMBNAIL_SIZES.items():
        image = source.copy()
        image.thumbnail((size, size))
        images[name] = _png(image)
    return images


def build(card, state):
    """pass.json and images for the card, with the manifest; not signed yet."""
    # Indented JSON on purpose: it contains newlines, which only verify because the
    # signature is made in binary mode (see sign()).
    files = {
        "pass.json": json.dumps(pass_json(card, state), indent=2, ensure_ascii=False).encode(),
    }
    files.update(company_images(card.company.name))
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


def build_signed(card, state, material=None):
    """Build, sign and zip; returns (BuiltPass, pkpass bytes)."""
    built = build(card, state)
    return built, package(built, sign(built.manifest, material))
