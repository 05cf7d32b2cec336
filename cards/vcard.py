"""vCard 3.0 serialisation of a business card, used by the download and the email attachment.

Escaping and line folding follow RFC 6350 section 3 (the same rules as RFC 2426 for
vCard 3.0): text values escape backslash, comma, semicolon and line breaks; a bare CR
is a line break too, so it cannot start a property of its own. Physical lines are at
most 75 octets of UTF-8, folded without splitting a character or an escape sequence;
continuation lines start with a space.
"""

import re

from django.utils.text import slugify

#: RFC 6350 section 3.2: "Lines of text SHOULD NOT be longer than 75 octets".
MAX_LINE_OCTETS = 75

# Control characters other than tab and newline would be read as line breaks or garbage.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# What folding must keep whole: an escape sequence, or one character.
_UNIT = re.compile(r"\\.|.", re.DOTALL)


def _escape(value):
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    value = _CONTROL.sub("", value)
    return value.replace("\\", "\\\\").replace(",", "\\,").replace(";", "\\;").replace("\n", "\\n")


def _uri(value):
    # URIs are not escaped (their commas and semicolons are literal), and a URI has no
    # whitespace or control characters: dropping them keeps each on its own property.
    return re.sub(r"[\x00-\x20\x7f]", "", value)


def fold(line):
    """Fold one content line into physical lines of at most 75 octets (RFC 6350 section 3.2)."""
    physical, current, size = [], [], 0
    for unit in _UNIT.findall(line):
        octets = len(unit.encode())
        if size + octets > MAX_LINE_OCTETS:
            physical.append("".join(current))
            current, size = [" "], 1
        current.append(unit)
        size += octets
    physical.append("".join(current))
    return "\r\n".join(physical)


def _split_name(full_name):
    parts = full_name.strip().rsplit(" ", 1)
    if len(parts) == 2:
        return parts[1], parts[0]
    return parts[0], ""


def build_vcard(card):
    """Return the card as vCard text with CRLF line endings."""
    family, given = _split_name(card.full_name)
    lines = [
        "BEGIN:VCARD",
        "VERSION:3.0",
        f"N:{_escape(family)};{_escape(given)};;;",
        f"FN:{_escape(card.full_name)}",
        f"ORG:{_escape(card.company.name)}",
    ]
    if card.job_title:
        lines.append(f"TITLE:{_escape(card.job_title)}")
    if card.email:
        lines.append(f"EMAIL;TYPE=INTERNET,WORK:{_uri(card.email)}")
    # A dialable number as E.164 (cards/phones.py: "+49 (0)711 / 123 45-67" is
    # +497111234567), which every address book dials from anywhere; one that does not
    # parse as typed, for a person to read.
    for kind, number in (("WORK,VOICE", card.phone_number), ("CELL", card.mobile_number)):
        if number:
            lines.append(f"TEL;TYPE={kind}:{_escape(number.e164 or number.typed)}")
    if card.website:
        lines.append(f"URL:{_uri(card.website)}")
    if card.address:
        lines.append(f"ADR;TYPE=WORK:;;{_escape(card.address)};;;;")
    lines.append(f"SOURCE:{_uri(card.vcard_url)}")
    lines.append("END:VCARD")
    return "".join(fold(line) + "\r\n" for line in lines)


def vcard_filename(card):
    return f"{slugify(card.full_name) or 'card'}.vcf"
