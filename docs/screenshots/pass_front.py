"""Render the front of built Apple Wallet passes from their own images: pass-front.png and
pass-front-brand.png in docs/screenshots/ (docs/features.md shows them).

Run: .venv/bin/python docs/screenshots/pass_front.py

Each pass is built by the real code (wallet/apple/pkpass.build(): pass.json, logo@2x,
thumbnail@2x, the company's brand colour) for a demo card, and laid out roughly as
Wallet lays out a generic pass at @2x: the logo and logoText at the top, the primary
field with the thumbnail beside it, the secondary and auxiliary fields, the barcode and
its text. It shows what the build puts on the front (sizes, colours, which label goes
with which value), not Apple's exact typography; the QR code is a placeholder pattern
(no QR library is installed), not a scannable code. Nothing is signed and no database
is written.
"""

import hashlib
import io
import json
import os
import secrets
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SCALE = 2
WIDTH = 320 * SCALE


def setup_django(media_root):
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
    os.environ["DATABASE_URL"] = "sqlite://:memory:"
    os.environ["MEDIA_ROOT"] = media_root
    os.environ.setdefault("SITE_URL", "https://cards.example.com")
    os.environ.setdefault("APPLE_PASS_TYPE_ID", "pass.com.example.card")
    os.environ.setdefault("APPLE_TEAM_ID", "ABCDE12345")
    import django

    django.setup()


def demo_photo():
    """A portrait-shaped stand-in photo (3:4): head and shoulders as plain shapes."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (600, 800), (214, 222, 232))
    draw = ImageDraw.Draw(image)
    draw.ellipse((180, 140, 420, 420), fill=(236, 196, 160))
    draw.rounded_rectangle((90, 470, 510, 900), radius=160, fill=(60, 72, 96))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


def demo_logo():
    """An emblem (8:5) in a large transparent canvas: the build trims the margins and
    sizes it to its content, 80 x 50 points here."""
    from PIL import Image, ImageDraw

    ink = (40, 30, 20, 255)
    image = Image.new("RGBA", (1200, 900), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse((300, 300, 600, 600), fill=ink)
    draw.polygon([(620, 600), (780, 300), (940, 600)], fill=ink)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def build(brand_color="", logo=False):
    from django.core.files.base import ContentFile

    from cards.models import BusinessCard, Company
    from wallet.apple import pkpass
    from wallet.models import CardWalletState

    company = Company(
        pk=1, name="Müller & Söhne", slug="mueller", language="de", country="DE",
        brand_color=brand_color,
    )  # fmt: skip
    if logo:
        company.logo.save("mueller.png", ContentFile(demo_logo()), save=False)
    card = BusinessCard(
        company=company,
        full_name="Jürgen Müller",
        job_title="Geschäftsführer",
        email="juergen@mueller-soehne.de",
        phone="+49 (0)711 / 123 45-67",
        mobile="0171 1234567",
        website="https://www.müller-söhne.de/team/jürgen",
    )
    card.photo.save("juergen.jpg", ContentFile(demo_photo()), save=False)
    return pkpass.build(card, CardWalletState(card=card))


def font(size, bold=False):
    from PIL import ImageFont

    for path in (
        "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf" if bold else "",
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    ):
        if path and Path(path).exists():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)


def fitted(draw, text, width, typeface):
    """The text, cut with an ellipsis to fit `width` pixels, as Wallet truncates."""
    if draw.textlength(text, font=typeface) <= width:
        return text
    while text and draw.textlength(text + "…", font=typeface) > width:
        text = text[:-1]
    return text + "…"


def colour(rgb_text):
    return tuple(int(v) for v in rgb_text[4:-1].split(","))


def render(built):
    """The pass front as a PIL image, from pass.json and the built PNGs."""
    from PIL import Image, ImageDraw

    doc = json.loads(built.files["pass.json"])
    background = colour(doc["backgroundColor"])
    foreground = colour(doc["foregroundColor"])
    label = colour(doc["labelColor"])
    generic = doc["generic"]
    height = 440 * SCALE
    image = Image.new("RGB", (WIDTH, height), background)
    draw = ImageDraw.Draw(image)
    margin = 14 * SCALE

    logo = Image.open(io.BytesIO(built.files["logo@2x.png"])).convert("RGBA")
    image.paste(logo, (margin, margin), logo)
    title_left = margin + logo.width + 8 * SCALE
    title_font = font(16 * SCALE, bold=True)
    draw.text(
        (title_left, margin + logo.height // 2),
        fitted(draw, doc["logoText"], WIDTH - margin - title_left, title_font),
        fill=foreground,
        font=title_font,
        anchor="lm",
    )
    y = margin + 50 * SCALE + 16 * SCALE

    if "thumbnail@2x.png" in built.files:
        thumb = Image.open(io.BytesIO(built.files["thumbnail@2x.png"])).convert("RGB")
        image.paste(thumb, (WIDTH - margin - thumb.width, y))
    for field in generic["primaryFields"]:
        draw.text((margin, y), field["label"], fill=label, font=font(10 * SCALE))
        draw.text((margin, y + 14 * SCALE), field["value"], fill=foreground, font=font(20 * SCALE))
    y += 90 * SCALE + 10 * SCALE

    for row in (generic["secondaryFields"], generic["auxiliaryFields"]):
        x = margin
        column = (WIDTH - 2 * margin) // max(1, len(row))
        for field in row:
            value_font = font(12 * SCALE)
            draw.text((x, y), field["label"], fill=label, font=font(9 * SCALE))
            value = fitted(draw, field["value"], column - 8 * SCALE, value_font)
            draw.text((x, y + 13 * SCALE), value, fill=foreground, font=value_font)
            x += column
        y += 44 * SCALE

    if doc.get("barcodes"):
        barcode = doc["barcodes"][0]
        size = 120 * SCALE
        left = (WIDTH - size) // 2
        top = height - size - 40 * SCALE
        draw.rounded_rectangle(
            (left - 8 * SCALE, top - 8 * SCALE, left + size + 8 * SCALE, top + size + 8 * SCALE),
            radius=6 * SCALE,
            fill=(255, 255, 255),
        )
        placeholder_qr(draw, barcode["message"], left, top, size)
        draw.text(
            (WIDTH // 2, top + size + 18 * SCALE),
            barcode.get("altText", ""),
            fill=foreground,
            font=font(10 * SCALE),
            anchor="mm",
        )
    return image


def placeholder_qr(draw, message, left, top, size):
    """A QR-like pattern derived from the message (not scannable), with finder squares."""
    cells = 25
    cell = size // cells
    bits = bin(int(hashlib.sha256(message.encode()).hexdigest() * 3, 16))[2:]
    for row in range(cells):
        for column in range(cells):
            if bits[(row * cells + column) % len(bits)] == "1":
                x, y = left + column * cell, top + row * cell
                draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=(0, 0, 0))
    for x, y in ((0, 0), (cells - 7, 0), (0, cells - 7)):
        outer = (
            left + x * cell,
            top + y * cell,
            left + (x + 7) * cell - 1,
            top + (y + 7) * cell - 1,
        )
        draw.rectangle(outer, fill=(0, 0, 0))
        draw.rectangle(
            (outer[0] + cell, outer[1] + cell, outer[2] - cell, outer[3] - cell),
            fill=(255, 255, 255),
        )
        draw.rectangle(
            (outer[0] + 2 * cell, outer[1] + 2 * cell, outer[2] - 2 * cell, outer[3] - 2 * cell),
            fill=(0, 0, 0),
        )


def main():
    with tempfile.TemporaryDirectory() as media_root:
        setup_django(media_root)
        for name, options in (
            ("pass-front.png", {}),
            ("pass-front-brand.png", {"brand_color": "#f5d142", "logo": True}),
        ):
            render(build(**options)).save(HERE / name, optimize=True)
            print(HERE / name)


if __name__ == "__main__":
    main()
