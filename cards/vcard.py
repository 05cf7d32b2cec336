"""vCard 3.0 serialisation of a business card (RFC 2426), used by the download and the email attachment."""

from django.utils.text import slugify


def _escape(value):
    # RFC 2426 section 4: backslash, comma, semicolon and newline are escaped in text values.
    return (
        value.replace("\\", "\\\\")
        .replace(",", "\\,")
        .replace(";", "\\;")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
    )


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
        lines.append(f"EMAIL;TYPE=INTERNET,WORK:{card.email}")
    if card.phone:
        lines.append(f"TEL;TYPE=WORK,VOICE:{_escape(card.phone)}")
    if card.mobile:
        lines.append(f"TEL;TYPE=CELL:{_escape(card.mobile)}")
    if card.website:
        lines.append(f"URL:{card.website}")
    if card.address:
        lines.append(f"ADR;TYPE=WORK:;;{_escape(card.address)};;;;")
    lines.append(f"SOURCE:{card.vcard_url}")
    lines.append("END:VCARD")
    return "\r\n".join(lines) + "\r\n"


def vcard_filename(card):
    return f"{slugify(card.full_name) or 'card'}.vcf"
