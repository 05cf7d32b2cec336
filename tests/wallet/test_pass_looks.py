"""Passes that look right (wallet/branding.py): one brand colour on both platforms, the
company's logo sized to its content (Apple) and sent to Google, a change of either
queueing the company's passes, thumbnails cropped on purpose, link descriptions within
Google's 20 characters in every language, genericType and the barcode's text."""

import io

import pytest
from django.core.files.base import ContentFile
from django.utils import translation
from PIL import Image

from tests.wallet.test_wallet_autosync import automatic_items
from wallet import branding
from wallet.apple import pkpass
from wallet.google.payload import build_object
from wallet.languages import pass_languages
from wallet.models import CardWalletState


def png(size, colour=(200, 30, 30, 255), margin=0):
    """A PNG of `size` whose content is a coloured box inside transparent margins."""
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    image.paste(colour, (margin, margin, size[0] - margin, size[1] - margin))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def sizes(files, stem):
    return {
        scale: Image.open(io.BytesIO(files[f"{stem}{scale}.png"])).size
        for scale in ("", "@2x", "@3x")
    }


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.MEDIA_URL = "/media/"


@pytest.mark.parametrize(
    ("brand", "apple_background", "text"),
    [
        ("", "rgb(20,40,80)", "rgb(255,255,255)"),  # the platform's colour
        ("#F5D142", "rgb(245,209,66)", "rgb(29,29,31)"),  # light: dark text stays legible
    ],
)
def test_one_brand_colour_on_both_platforms(apple, google, card, brand, apple_background, text):
    card.company.brand_color = brand
    card.company.save()
    data = pkpass.pass_json(card, CardWalletState.objects.for_card(card))
    assert data["backgroundColor"] == apple_background
    assert data["foregroundColor"] == text
    google_colour = build_object(card)["hexBackgroundColor"]
    assert branding.rgb(google_colour) == tuple(int(v) for v in apple_background[4:-1].split(","))


def test_the_logo_is_sized_to_its_content_at_every_scale(apple, card, media):
    # A wide logo in a large transparent canvas: trimmed, then fitted within 160 x 50 pt.
    card.company.logo.save("acme.png", ContentFile(png((1200, 600), margin=100)))
    files = pkpass.build(card, CardWalletState.objects.for_card(card)).files
    # Content 1000 x 400 (2.5:1): 125 x 50 pt, not stretched, not padded to 160.
    assert sizes(files, "logo") == {"": (125, 50), "@2x": (250, 100), "@3x": (375, 150)}
    # An extra-wide one is bounded by the 160 points instead.
    card.company.logo.save("banner.png", ContentFile(png((1600, 100))))
    files = pkpass.build(card, CardWalletState.objects.for_card(card)).files
    assert sizes(files, "logo") == {"": (160, 10), "@2x": (320, 20), "@3x": (480, 30)}
    assert sizes(files, "icon") == {"": (29, 29), "@2x": (58, 58), "@3x": (87, 87)}


def test_thumbnails_of_a_tall_photo_are_cropped_to_a_square(apple, card, media):
    # Outside 2:3-3:2, which Wallet would crop wherever it likes: a square, by us.
    tall = Image.new("RGB", (300, 900), (0, 0, 200))
    tall.paste((0, 200, 0), (0, 0, 300, 200))  # the top band (above a face) is cropped
    out = io.BytesIO()
    tall.save(out, format="JPEG")
    card.photo.save("tall.jpg", ContentFile(out.getvalue()))
    files = pkpass.build(card, CardWalletState.objects.for_card(card)).files
    assert sizes(files, "thumbnail") == {"": (90, 90), "@2x": (180, 180), "@3x": (270, 270)}
    top = Image.open(io.BytesIO(files["thumbnail@3x.png"])).getpixel((135, 2))
    assert top[2] > 150 and top[1] < 100  # blue: the crop starts below the green band


def test_google_gets_the_companys_logo_else_the_platforms(google, card, media, settings):
    assert build_object(card)["logo"]["sourceUri"]["uri"] == settings.GOOGLE_WALLET_LOGO_URL
    card.company.logo.save("acme.png", ContentFile(png((300, 100))))
    uri = build_object(card)["logo"]["sourceUri"]["uri"]
    assert uri.startswith(settings.SITE_URL + "/media/company-logos/acme") and uri.endswith(".png")


@pytest.mark.parametrize("change", ["logo", "brand_color", "country"])
def test_a_new_logo_or_colour_queues_the_companys_passes(
    apple, issued, company, media, django_capture_on_commit_callbacks, change
):
    with django_capture_on_commit_callbacks(execute=True):
        if change == "logo":
            company.logo.save("acme.png", ContentFile(png((300, 100))), save=False)
        elif change == "brand_color":
            company.brand_color = "#aa3300"
        else:
            company.country = "AT"
        company.save()
    assert [item.card_id for item in automatic_items(company)] == [issued.card_id]


def test_link_descriptions_fit_googles_20_characters_in_every_language(google, card):
    for language in pass_languages():
        card.company.language = language
        for link in build_object(card)["linksModuleData"]["uris"]:
            localized = link["localizedDescription"]
            values = [localized["defaultValue"], *localized["translatedValues"]]
            assert {v["language"] for v in values} == set(pass_languages())
            for value in values:
                assert len(value["value"]) <= 20, value


def test_a_business_card_with_the_barcodes_text_in_the_companys_language(google, card):
    card.company.language = "de"
    body = build_object(card)
    assert body["genericType"] == "GENERIC_BUSINESS_CARD"
    with translation.override("de"):
        assert body["barcode"]["alternateText"] == "Scannen, um die Karte zu öffnen"
