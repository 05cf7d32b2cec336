"""What a company's passes look like on both platforms: one brand colour, one logo.

The colour is the company's (Company.brand_color), else settings.WALLET_BRAND_COLOR: the
Apple pass's backgroundColor and the Google object's hexBackgroundColor are the same
colour. Text and labels on the Apple pass are white or near-black, whichever reads
better on it (WCAG contrast), so a light brand colour stays legible.

The Apple logo (logo.png, @2x, @3x) is sized to its content within the 160 x 50 points
Wallet gives it: the company's uploaded logo with its transparent margins trimmed and
scaled to fit, else a square mark of the company's initials. A logo as wide as the whole
area would leave no room for the company name (logoText) beside it, so a mark is never
padded to 160 points. Google fetches the logo itself, from a URL: the company's uploaded
logo's, else the platform's (GOOGLE_WALLET_LOGO_URL).

Photos become thumbnails (90 x 90 points at @1x, @2x and @3x) by a deliberate square
crop, centred a little above the middle where a portrait's face is; Wallet would crop
anything outside 2:3 to 3:2 by itself, wherever it liked.
"""

import io
from functools import lru_cache

from django.conf import settings
from PIL import Image, ImageDraw, ImageFont, ImageOps

#: Wallet's logo area in points, and the scales Apple asks for.
LOGO_POINTS = (160, 50)
SCALES = {"": 1, "@2x": 2, "@3x": 3}
ICON_POINTS = 29
THUMBNAIL_POINTS = 90
#: Where a portrait's crop is centred: across the middle, a third of the way down.
PORTRAIT_CENTRE = (0.5, 0.35)
DARK_TEXT = (29, 29, 31)
WHITE = (255, 255, 255)


def brand_color(company):
    """The company's colour as #rrggbb (lower case), the platform's when it has none."""
    colour = (getattr(company, "brand_color", "") or "").strip()
    return (colour or str(settings.WALLET_BRAND_COLOR).strip() or "#142850").lower()


def rgb(hex_colour):
    value = hex_colour.lstrip("#")
    return tuple(int(value[i : i + 2], 16) for i in (0, 2, 4))


def _luminance(colour):
    """WCAG 2 relative luminance of an (r, g, b) colour."""

    def channel(value):
        value /= 255
        return value / 12.92 if value <= 0.03928 else ((value + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in colour)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a, b):
    light, dark = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def colours(company):
    """(background, foreground, label) as (r, g, b) for the company's passes."""
    return colours_of(brand_color(company))


@lru_cache(maxsize=256)
def colours_of(hex_colour):
    """(background, foreground, label) as (r, g, b) on a #rrggbb background."""
    background = rgb(hex_colour)
    foreground = max((WHITE, DARK_TEXT), key=lambda text: contrast(text, background))
    # Labels a step softer than the values, still on the same side of the background.
    label = tuple(round(f * 0.75 + b * 0.25) for f, b in zip(foreground, background, strict=True))
    return background, foreground, label


def company_logo_url(company):
    """The absolute URL of the company's uploaded logo, or ""."""
    logo = getattr(company, "logo", None)
    if not logo:
        return ""
    url = logo.url
    return url if url.startswith(("http://", "https://")) else settings.SITE_URL + url


def _png(image):
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _font(size):
    # Pillow's bundled scalable font (needs FreeType, which Pillow's wheels include).
    return ImageFont.load_default(size=size)


def initials(name):
    letters = [part[0] for part in name.split() if part[:1].isalnum()]
    return ("".join(letters[:2]) or "?").upper()


def fit_within(size, box):
    """The largest size of `size`'s aspect ratio within `box` (never 0)."""
    width, height = size
    scale = min(box[0] / width, box[1] / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def trimmed(image):
    """The image without its fully transparent margins (RGBA)."""
    image = image.convert("RGBA")
    box = image.getchannel("A").getbbox()
    return image.crop(box) if box else image


@lru_cache(maxsize=256)
def apple_images(name, brand, logo_name=""):
    """{file name: PNG} of a company's icon and logo at every scale. Keyed by what they
    show (name, colour, uploaded logo file: a new upload gets a new name), so every
    card of the company shares them; PNG encoding is the slow part."""
    background, foreground, _label = colours_of(brand)
    images = {}
    mark = initials(name)
    for suffix, scale in SCALES.items():
        size = ICON_POINTS * scale
        icon = Image.new("RGB", (size, size), background)
        ImageDraw.Draw(icon).text(
            (size / 2, size / 2), mark, fill=foreground, font=_font(int(size * 0.45)), anchor="mm"
        )
        images[f"icon{suffix}.png"] = _png(icon)
    source = _load_logo(logo_name) if logo_name else None
    for suffix, scale in SCALES.items():
        box = (LOGO_POINTS[0] * scale, LOGO_POINTS[1] * scale)
        if source is not None:
            logo = source.resize(fit_within(source.size, box), Image.Resampling.LANCZOS)
        else:
            logo = _initials_mark(mark, box[1], background, foreground)
        images[f"logo{suffix}.png"] = _png(logo)
    return images


def _initials_mark(mark, height, background, foreground):
    """A square mark (transparent corners: Wallet draws it on the pass colour)."""
    image = Image.new("RGBA", (height, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    inset = max(1, height // 25)
    draw.rounded_rectangle(
        (inset, inset, height - inset - 1, height - inset - 1),
        radius=height // 5,
        fill=foreground + (255,),
    )
    draw.text(
        (height / 2, height / 2),
        mark,
        fill=background + (255,),
        font=_font(int(height * 0.42)),
        anchor="mm",
    )
    return image


def _load_logo(name):
    """The uploaded logo, trimmed; None when it cannot be read (the initials then)."""
    from django.core.files.storage import default_storage

    try:
        with default_storage.open(name, "rb") as handle:
            image = Image.open(handle)
            image.load()
    except (OSError, ValueError):
        return None
    return trimmed(image)


def thumbnails(source):
    """{file name: PNG} of a photo's thumbnails: square, cropped deliberately."""
    source = ImageOps.exif_transpose(source).convert("RGB")
    images = {}
    for suffix, scale in SCALES.items():
        size = THUMBNAIL_POINTS * scale
        image = ImageOps.fit(
            source, (size, size), Image.Resampling.LANCZOS, centering=PORTRAIT_CENTRE
        )
        images[f"thumbnail{suffix}.png"] = _png(image)
    return images
