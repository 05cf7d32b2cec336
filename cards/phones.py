"""Phone numbers of cards, parsed with phonenumbers (Google's libphonenumber).

People type numbers the way their country writes them: "+49 (0)711 / 123 45-67",
"0711 1234567", "+1 (555) 010-0000". Stripping the non-digits turns the first into
+4907111234567, a wrong number, so every number is parsed, with the company's country
(Company.country, else settings.DEFAULT_PHONE_REGION) as the region of numbers typed
without a country code. A parsed number is

- dialable: written as E.164 in `tel:` links (the public page, the email, Google Wallet's
  link module) and in the vCard, and shown in the national format when it is in the
  company's country ("0711 1234567"), in the international one otherwise
  ("+1 555-010-0000"), so whoever reads the card can dial it;
- not dialable: shown exactly as typed, with no `tel:` link, rather than as a guess
  that calls a stranger. The admin's card form refuses such a number when it is entered
  (cards/admin.py).

A number of the company's own country (typed with or without its country code) must be
a valid number there. A number typed with another country's code ("+1 ...", "00 1 ...")
counts when its length is possible for that country: the person said where it is, and
the library's ranges of a far-away country may be behind one newly opened there.
"""

from dataclasses import dataclass
from functools import lru_cache

import phonenumbers
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

FORMAT = phonenumbers.PhoneNumberFormat


@dataclass(frozen=True)
class Phone:
    """One number as typed and, when dialable, its standard forms."""

    typed: str
    #: "+497111234567"; "" when the number is not dialable
    e164: str = ""
    #: what people read: national format in the company's country, else international
    display: str = ""

    @property
    def dialable(self):
        return bool(self.e164)

    @property
    def tel_uri(self):
        """The `tel:` URI (RFC 3966, global number), or "" for a number not dialable."""
        return f"tel:{self.e164}" if self.e164 else ""

    def __str__(self):
        return self.display or self.typed

    def __bool__(self):
        return bool(self.typed)


def default_region():
    """settings.DEFAULT_PHONE_REGION, checked: an ISO 3166 code phonenumbers knows."""
    region = str(getattr(settings, "DEFAULT_PHONE_REGION", "DE") or "").upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ImproperlyConfigured(
            f"DEFAULT_PHONE_REGION = {region!r} is not a country code phonenumbers knows "
            "(an ISO 3166 code such as DE, AT, CH, US)."
        )
    return region


def region_of(company):
    """The region of a company's numbers typed without a country code."""
    country = (getattr(company, "country", "") or "").upper()
    return country if country in phonenumbers.SUPPORTED_REGIONS else default_region()


def parse(typed, region):
    """The Phone for a number as typed, read with `region` as its default country."""
    typed = (typed or "").strip()
    if not typed:
        return Phone("")
    return _parse(typed, region.upper())


@lru_cache(maxsize=4096)
def _parse(typed, region):
    try:
        number = phonenumbers.parse(typed, region)
    except phonenumbers.NumberParseException:
        return Phone(typed)
    own_country = number.country_code == phonenumbers.country_code_for_region(region)
    if own_country:
        dialable = phonenumbers.is_valid_number(number)
    else:
        # Typed with another country's code: a possible length for that country is
        # enough (a number only dialable from within its area is not).
        dialable = (
            phonenumbers.is_possible_number_with_reason(number)
            == phonenumbers.ValidationResult.IS_POSSIBLE
        )
    if not dialable:
        return Phone(typed)
    display = phonenumbers.format_number(
        number, FORMAT.NATIONAL if own_country else FORMAT.INTERNATIONAL
    )
    return Phone(typed, phonenumbers.format_number(number, FORMAT.E164), display)


def card_phone(card, field):
    """The Phone of a card's `field` ("phone" or "mobile"), in its company's region."""
    return parse(getattr(card, field), region_of(card.company))
