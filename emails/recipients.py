"""Parsing and validating pasted or uploaded recipient lists.

Accepted line forms: `jane@example.com`, `Jane Doe <jane@example.com>`, CSV rows
`jane@example.com,Jane Doe` or `Jane Doe;jane@example.com` (comma, semicolon or tab), and
several addresses on one line (`a@example.com, b@example.com`), all of which are kept.
Blank lines and lines starting with `#` are ignored; a CSV header row (a line with
"email" in it but no @) too.

Addresses are checked as an SMTP server would (RFC 5321 lengths: local part 64
octets, address 254), international domains are stored in their ASCII (punycode) form,
and local parts must be ASCII: SMTPUTF8 is not supported. Every problem is reported
with its line number; nothing is silently dropped.

Uploaded files are decoded from the encodings spreadsheet programs write: UTF-8 with or
without BOM, UTF-16 with BOM, and Windows-1252 (Excel's "CSV" on Western European
systems); anything else is refused with a message saying how to save the file.
"""

import codecs
import functools
import re
from dataclasses import dataclass
from email.utils import parseaddr
from typing import NamedTuple

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator
from django.utils.encoding import punycode
from django.utils.formats import number_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext


class RecipientEmailValidator(EmailValidator):
    """Django's EmailValidator with its domain check cached: a long list has few domains,
    and the domain's regular expression costs more than the rest of a line's checks."""

    def validate_domain_part(self, domain_part):
        return _valid_domain(domain_part)


@functools.lru_cache(maxsize=4096)
def _valid_domain(domain_part):
    # The check uses the class's regular expressions only, not the instance's settings.
    return EmailValidator().validate_domain_part(domain_part)


# No allow-list: Django's default accepts `user@localhost`, which no real recipient has.
validate_recipient_email = RecipientEmailValidator(
    message=gettext_lazy("Enter a valid email address with a full domain (like name@example.com)."),
    allowlist=[],
)

#: RFC 5321 section 4.5.3.1: the longest local part and address an SMTP server must accept.
MAX_LOCAL_PART_LENGTH = 64
MAX_ADDRESS_LENGTH = 254
#: A line holds a few addresses and names; anything longer is a wrong file or paste.
MAX_LINE_LENGTH = 1000
#: How much of a bad line is quoted back in its error message.
SHOWN_TEXT_LENGTH = 100
#: Bad lines reported one by one; the others are counted (a list in the wrong format
#: would otherwise be a page of 100,000 errors).
MAX_BAD_LINES_LISTED = 100

SAVE_AS_UTF8 = gettext_lazy(
    'Save it as "CSV UTF-8 (comma delimited)" (Excel: File > Save As) or as plain '
    "text in UTF-8, then upload it again."
)

# Excel workbooks (xlsx is a zip file, xls an OLE compound file) uploaded instead of CSV.
_WORKBOOK_SIGNATURES = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0")
# Control characters other than tab never belong in an address or a name (and
# PostgreSQL refuses NUL in text).
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class Recipient(NamedTuple):
    # A tuple: a list of 200,000 recipients is kept while it is checked.
    email: str
    name: str = ""
    #: the address as typed, when it differs from `email` (an international domain)
    typed_email: str = ""

    @property
    def key(self):
        return self.email.lower()


@dataclass(frozen=True)
class BadLine:
    line_number: int
    text: str
    problem: str

    def __str__(self):
        return _("Line %(number)s: %(problem)s (%(text)r)") % {
            "number": self.line_number,
            "problem": self.problem,
            "text": self.text,
        }


class RecipientListError(ValidationError):
    """Some lines are invalid; carries the bad lines (the first MAX_BAD_LINES_LISTED) so
    the user can fix them at once, and `count`, how many there are in all."""

    def __init__(self, bad_lines, count=None):
        self.bad_lines = list(bad_lines)
        self.count = len(self.bad_lines) if count is None else count
        messages = [str(line) for line in self.bad_lines]
        if self.count > len(self.bad_lines):
            messages.append(more_bad_lines(self.count - len(self.bad_lines)))
        super().__init__(messages)


def more_bad_lines(count):
    return ngettext(
        "…and %(count)s more line with a problem.",
        "…and %(count)s more lines with problems.",
        count,
    ) % {"count": number_format(count, force_grouping=True)}


def _unreadable_file(problem):
    """The problem and how to save the file so that it can be read."""
    return ValidationError(f"{problem} {SAVE_AS_UTF8}")


def decode_upload(data):
    """Return the text of an uploaded recipient file, or raise ValidationError saying how to save it."""
    if data.startswith(_WORKBOOK_SIGNATURES):
        raise _unreadable_file(_("The file is a spreadsheet workbook, not a CSV file."))
    if data.startswith(codecs.BOM_UTF8):
        encodings = ["utf-8-sig"]
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encodings = ["utf-16"]
    elif data.count(b"\x00") * 8 > len(data):
        # Text has no NUL bytes; this many means UTF-16 without a BOM, or not text at
        # all. A stray few are reported by parse_recipients with their line numbers.
        raise _unreadable_file(_("The file is not a text (CSV) file."))
    else:
        # Windows-1252 decodes almost any byte, so it comes last: valid UTF-8 is
        # practically never valid Windows-1252 text with the same meaning.
        encodings = ["utf-8", "cp1252"]
    for encoding in encodings:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise _unreadable_file(_("The file's characters could not be read."))


_SEPARATOR = re.compile(r"[,;\t]")


def _fields(line):
    """Split a line at commas, semicolons and tabs outside double quotes and <...>."""
    if '"' not in line and "<" not in line:
        # Nothing to stay inside of (most lines of a long list): the same split, faster.
        return [field.strip() for field in _SEPARATOR.split(line)]
    fields, current, quoted, bracketed = [], [], False, False
    for char in line:
        if char == '"' and not bracketed:
            quoted = not quoted
        elif char == "<" and not quoted:
            bracketed = True
        elif char == ">" and not quoted:
            bracketed = False
        elif char in ",;\t" and not (quoted or bracketed):
            fields.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    fields.append("".join(current).strip())
    return fields


def _unquote(field):
    if len(field) >= 2 and field[0] == field[-1] == '"':
        return field[1:-1].replace('""', '"')
    return field


def _split_line(line):
    """Return ([(address, name), ...], problem); names only come from CSV-style rows."""
    addresses, names = [], []
    for field in _fields(line):
        if "<" in field and ">" in field:
            name, address = parseaddr(field)
            addresses.append((address or field, name))
        elif "@" in field:
            addresses.append((_unquote(field), ""))
        elif field:
            names.append(_unquote(field))
    if not addresses:
        return [(names[0] if names else line, "")], None
    if len(addresses) == 1:
        address, name = addresses[0]
        return [(address, name or (names[0] if names else ""))], None
    if names:
        return [], _(
            "several addresses and names on one line; put each recipient on a line of its own"
        )
    return addresses, None


def ascii_address(address):
    """Return the address with its domain in ASCII (punycode), or raise ValidationError."""
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise ValidationError(validate_recipient_email.message)
    if not local.isascii():
        raise ValidationError(
            _(
                "the part before @ has non-ASCII characters; such addresses (SMTPUTF8) "
                "cannot be sent to, ask the recipient for another address"
            )
        )
    domain = _ascii_domain(domain)
    if domain is None:
        raise ValidationError(validate_recipient_email.message)
    if len(local) > MAX_LOCAL_PART_LENGTH:
        raise ValidationError(
            _("the part before @ is longer than %(count)s characters")
            % {"count": MAX_LOCAL_PART_LENGTH}
        )
    address = f"{local}@{domain}"
    if len(address) > MAX_ADDRESS_LENGTH:
        raise ValidationError(
            _("the address is longer than %(count)s characters") % {"count": MAX_ADDRESS_LENGTH}
        )
    validate_recipient_email(address)
    return address


@functools.lru_cache(maxsize=4096)
def _ascii_domain(domain):
    """The domain in ASCII (punycode), or None. Cached: a long list has few domains, and
    the IDNA codec costs more than the rest of a line's checks."""
    try:
        return punycode(domain)
    except UnicodeError:
        return None


def _shown(line):
    return line if len(line) <= SHOWN_TEXT_LENGTH else line[:SHOWN_TEXT_LENGTH] + "…"


def _line_problem(line):
    if len(line) > MAX_LINE_LENGTH:
        return _(
            "the line is longer than %(count)s characters; put each recipient on a line of its own"
        ) % {"count": number_format(MAX_LINE_LENGTH, force_grouping=True)}
    control = _CONTROL.search(line)
    if control:
        return _("the line contains a control character (%(character)s); remove it") % {
            "character": f"U+{ord(control.group()):04X}"
        }
    return None


def too_many_recipients(limit):
    return ValidationError(
        _(
            "The job would have more than %(count)s recipients, the most one job takes; "
            "split the list and send each part as a job of its own."
        )
        % {"count": number_format(limit, force_grouping=True)}
    )


def parse_recipients(text, max_recipients=None):
    """Return (recipients without duplicates, number of duplicates dropped).

    Raises RecipientListError listing the bad lines (the first MAX_BAD_LINES_LISTED, and
    how many there are), or ValidationError as soon as there are more than
    `max_recipients`; nothing is returned then.
    """
    recipients, seen, bad, bad_count, duplicates = [], set(), [], 0, 0

    def bad_line(number, line, problem):
        nonlocal bad_count
        bad_count += 1
        if len(bad) < MAX_BAD_LINES_LISTED:
            bad.append(BadLine(number, _shown(line), problem))

    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip().lstrip("\ufeff")
        if not line or line.startswith("#"):
            continue
        problem = _line_problem(line)
        if problem:
            bad_line(number, line, problem)
            continue
        if "@" not in line and "email" in line.lower():
            continue  # a CSV header row
        pairs, problem = _split_line(line)
        if problem:
            bad_line(number, line, problem)
            continue
        for typed, name in pairs:
            try:
                address = ascii_address(typed)
            except ValidationError as exc:
                bad_line(number, line, exc.messages[0])
                continue
            key = address.lower()
            if key in seen:
                duplicates += 1
                continue
            # The address itself when it is in lower case already: one string, not two.
            seen.add(address if key == address else key)
            recipients.append(
                Recipient(
                    address,
                    " ".join(name.split())[:200] if name else "",
                    typed if typed != address else "",
                )
            )
            if max_recipients is not None and len(recipients) > max_recipients:
                raise too_many_recipients(max_recipients)
    if bad:
        raise RecipientListError(bad, bad_count)
    return recipients, duplicates
