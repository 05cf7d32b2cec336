"""What is sent to Google Wallet: one genericObject per business card, one genericClass per
company, their ids and the content hash that tells whether a card changed.

What goes where follows Google's REST reference: a genericClass has no issuer name, logo
or colour (those are loyaltyClass fields); a generic pass takes its title (the company
name), logo and hexBackgroundColor from the object, so the object carries them and a
changed logo or colour setting changes every object's hash. The class carries what is
the same for every card of a company: that anyone may save it
(multipleDevicesAndHoldersAllowedStatus MULTIPLE_HOLDERS: the public card page offers
the save link to every visitor, and Google's default lets only the first saver keep
an object).

Pure data (no HTTP, no google-auth): wallet/google/client.py sends these bodies, and
wallet/google/links.py names the object in the save link.
"""

import hashlib
import json

from django.utils import translation
from django.utils.translation import gettext, gettext_noop

from wallet import branding
from wallet.errors import NotConfigured
from wallet.languages import pass_languages
from wallet.uris import ascii_email, ascii_uri

from . import conf

# Part of the content hash: bump it when build_object() changes shape, so every card is
# pushed once more even though its own data did not change. (2: translated headers and
# link descriptions; the class no longer counts, it is kept up to date on its own.
# 3: parsed phone numbers, ASCII URIs, genericType, the company's colour and logo,
# the barcode's alternateText.)
PAYLOAD_VERSION = 3


def _issuer():
    issuer = conf.issuer_id()
    if not issuer:
        raise NotConfigured("Google Wallet is not configured; set GOOGLE_WALLET_ISSUER_ID.")
    return issuer


def object_id_for(card):
    """The card's object id: stable for the card's lifetime, and only [A-Za-z0-9._-]."""
    return f"{_issuer()}.{card.public_id.hex}"


def class_id_for(company):
    """The company's class id; the primary key keeps it stable across slug renames."""
    return f"{_issuer()}.company-{company.pk}"


def _bcp47(code):
    # Google wants a BCP 47 tag; Django's "en-us" becomes "en-US".
    lang, _sep, region = code.partition("-")
    return f"{lang}-{region.upper()}" if region else lang


def _localized(value, language):
    """Card data (names, numbers): one value, tagged with the company's language."""
    return {"defaultValue": {"language": _bcp47(language), "value": value}}


def _translated(message, language, **params):
    """One of our words: the company's language as default, the other languages as
    translatedValues, so Google shows each holder their phone's language where it can."""

    def text(code):
        with translation.override(code):
            return gettext(message) % params if params else gettext(message)

    return {
        "defaultValue": {"language": _bcp47(language), "value": text(language)},
        "translatedValues": [
            {"language": _bcp47(code), "value": text(code)}
            for code in pass_languages()
            if code != language
        ],
    }


def _translated_text(message, language):
    with translation.override(language):
        return gettext(message)


def build_class(company):
    """The company's genericClass (fields of Google's GenericClass resource only).

    Generic passes take their title, logo and colour from the object (build_object());
    the class says that any number of people may save the card, as a business card
    handed out on a public page needs.
    """
    return {
        "id": class_id_for(company),
        "multipleDevicesAndHoldersAllowedStatus": "MULTIPLE_HOLDERS",
    }


def build_object(card):
    """The card's genericObject as sent with PATCH.

    Optional top-level fields the card no longer has are sent as null: PATCH leaves
    absent fields untouched, and null is how Google's JSON APIs clear a field under patch
    semantics, so a removed job title or logo disappears from the pass too. Our words
    (module headers, link descriptions) are in the company's language with the other
    languages as translatedValues; the plain header/description stay for clients that
    read only those.
    """
    company = card.company
    language = company.language
    # The company's own logo, else the platform's; the same brand colour as on the Apple
    # pass (wallet/branding.py). A change of either queues the company's cards
    # (wallet/autosync.py), and changes every object's hash.
    logo = ascii_uri(branding.company_logo_url(company) or conf.logo_url())
    # Numbers parsed in the company's country (cards/phones.py): dialled as E.164, shown
    # as people write them there; one that does not parse is shown as typed, not linked.
    phone, mobile = card.phone_number, card.mobile_number
    texts = []
    links = []
    for key, header, value in (
        ("phone", gettext_noop("Phone"), str(phone)),
        ("mobile", gettext_noop("Mobile"), str(mobile)),
        ("email", gettext_noop("Email"), card.email),
        ("website", gettext_noop("Website"), card.website),
        ("address", gettext_noop("Address"), card.address),
    ):
        if value:
            localized = _translated(header, language)
            texts.append(
                {
                    "id": key,
                    "header": localized["defaultValue"]["value"],
                    "localizedHeader": localized,
                    "body": value,
                }
            )
    for key, description, uri in (
        ("phone", gettext_noop("Call"), phone.tel_uri),
        ("mobile", gettext_noop("Call mobile"), mobile.tel_uri),
        (
            "email",
            gettext_noop("Send email"),
            f"mailto:{ascii_email(card.email)}" if card.email else "",
        ),
        # Every URI in ASCII (IDNA host, percent-encoded path): Google validates them.
        ("website", gettext_noop("Website"), ascii_uri(card.website)),
        # At most 20 characters in every language: Google's recommendation for link
        # descriptions (tests/wallet/test_google_looks.py holds every translation to it).
        ("card", gettext_noop("Open the card"), ascii_uri(card.public_url)),
    ):
        if uri:
            localized = _translated(description, language)
            links.append(
                {
                    "id": key,
                    "uri": uri,
                    "description": localized["defaultValue"]["value"],
                    "localizedDescription": localized,
                }
            )
    return {
        "id": object_id_for(card),
        "classId": class_id_for(company),
        "state": "ACTIVE",
        "cardTitle": _localized(company.name, language),
        "header": _localized(card.full_name, language),
        "subheader": _localized(card.job_title, language) if card.job_title else None,
        "logo": (
            {
                "sourceUri": {"uri": logo},
                "contentDescription": _translated(
                    gettext_noop("%(company)s logo"), language, company=company.name
                ),
            }
            if logo
            else None
        ),
        "genericType": "GENERIC_BUSINESS_CARD",
        "hexBackgroundColor": branding.brand_color(company),
        "barcode": {
            "type": "QR_CODE",
            "value": card.public_url,
            # Shown under the code instead of the long URL, as on the Apple pass.
            "alternateText": _translated_text(gettext_noop("Scan to open the card"), language),
        },
        "textModulesData": texts,
        "linksModuleData": {"uris": links},
    }


def body_hash(body):
    """Hash of a class or object body (with PAYLOAD_VERSION): equal hashes, nothing to send."""
    data = {"v": PAYLOAD_VERSION, "body": body}
    encoded = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(encoded.encode()).hexdigest()
