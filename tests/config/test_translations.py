"""The translation catalogues: complete, not fuzzy, and the committed .mo files up to date.

The compiled .mo files are committed so that hosts without GNU gettext need nothing to
run the app in German; these tests catch a .po edited without `make messages`
(compile), and entries left untranslated or fuzzy by makemessages.
"""

import re
from pathlib import Path

import polib
import pytest
from django.conf import settings

CATALOGUES = sorted(
    po for locale_dir in settings.LOCALE_PATHS for po in Path(locale_dir).glob("*/LC_MESSAGES/*.po")
)
# Python's %-placeholders as gettext's python-format sees them: %(name)s, %s, %d...
PLACEHOLDER = re.compile(r"%(?:\([^)]+\))?[#0\- +]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa%]")


def _id(path):
    return str(path.relative_to(settings.BASE_DIR))


def translations(entries):
    """{(context, msgid): msgstr or {plural index: msgstr}} of the translated entries."""
    result = {}
    for entry in entries:
        if entry.msgid_plural:
            value = {int(n): text for n, text in entry.msgstr_plural.items()}
        else:
            value = entry.msgstr
        result[entry.msgctxt, entry.msgid] = value
    return result


def test_there_is_a_german_catalogue():
    assert Path(settings.BASE_DIR, "locale/de/LC_MESSAGES/django.po") in CATALOGUES


@pytest.mark.parametrize("po_path", CATALOGUES, ids=_id)
def test_every_entry_is_translated_and_none_is_fuzzy(po_path):
    po = polib.pofile(str(po_path))
    live = [entry for entry in po if not entry.obsolete]
    assert live, "an empty catalogue"
    untranslated = [entry.msgid for entry in live if not entry.translated()]
    fuzzy = [entry.msgid for entry in live if "fuzzy" in entry.flags]
    assert not untranslated, f"untranslated in {_id(po_path)}: {untranslated}"
    assert not fuzzy, f"fuzzy (check, then remove the flag) in {_id(po_path)}: {fuzzy}"
    assert not po.metadata_is_fuzzy, "the header is marked fuzzy"
    assert po.metadata["Language"] == po_path.parts[-3]


@pytest.mark.parametrize("po_path", CATALOGUES, ids=_id)
def test_translations_keep_the_placeholders(po_path):
    """A translation that drops or renames %(name)s would raise KeyError on the page."""
    wrong = []
    for entry in polib.pofile(str(po_path)).translated_entries():
        expected = sorted(PLACEHOLDER.findall(entry.msgid_plural or entry.msgid))
        texts = entry.msgstr_plural.values() if entry.msgid_plural else [entry.msgstr]
        for text in texts:
            # A singular form may leave the count out ("eine Karte"), never add one.
            found = sorted(PLACEHOLDER.findall(text))
            if found != expected and not (entry.msgid_plural and set(found) <= set(expected)):
                wrong.append((entry.msgid, text))
    assert not wrong, f"placeholders differ in {_id(po_path)}: {wrong}"


@pytest.mark.parametrize("po_path", CATALOGUES, ids=_id)
def test_the_committed_mo_matches_the_po(po_path):
    mo_path = po_path.with_suffix(".mo")
    assert mo_path.exists(), f"{_id(mo_path)} is missing: run `make messages`"
    po = polib.pofile(str(po_path))
    mo = polib.mofile(str(mo_path))
    expected = translations(po.translated_entries())
    compiled = translations(entry for entry in mo if entry.msgid)
    assert compiled == expected, f"{_id(mo_path)} is out of date: run `make messages`"
    assert mo.metadata.get("Plural-Forms") == po.metadata.get("Plural-Forms")
