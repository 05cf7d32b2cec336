"""Parsing and validating pasted or uploaded recipient lists.

Accepted line forms: `jane@example.com`, `Jane Doe <jane@example.com>`, CSV rows
`jane@example.com,Jane Doe` or `Jane Doe;jane@example.com` (comma, semicolon or tab), and
several addresses on one line (`a@example.com, b@example.com`), all of which are kept.
Blank lines, empty spreadsheet rows and lines starting with `#` are ignored. A header row
as spreadsheets write it (`E-Mail;Name`, `Name,Email`, `Vorname<TAB>Nachname<TAB>E-Mail-
Adresse`, in English or German) says which columns hold the address and the name
(first and last names joined) and which separator the rows use; any column order.

Addresses are checked as an SMTP server would (RFC 5321 lengths: local part 64
octets, address 254), international domains are stored in their ASCII (punycode) form,
and local parts must be ASCII: SMTPUTF8 is not supported. Every problem is reported
with its line number and what kind of mistake it is (two @, no domain, a name without an
address, an unclosed bracket, two addresses glued together); nothing is silently dropped.

The work is linear and bounded: lines are read one at a time, only the first
MAX_BAD_LINES_LISTED bad lines are kept (and counted beyond), a list with more lines
than max_lines() is refused before it is read, and international domains are converted
per label, cached, at most 63 characters each (see _ascii_label()).

Uploaded files are decoded from the encodings spreadsheet programs write: UTF-8 with or
without BOM, UTF-16 with BOM, and Windows-1252 (Excel's "CSV" on Western European
systems); anything else is refused with a message saying how to save the file.
"""

import codecs
import functools
import io
import re
import stringprep
import unicodedata
from dataclasses import dataclass
from email.utils import parseaddr
from encodings import idna as idna_codec
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


_SEPARATORS = ",;\t"


@functools.lru_cache(maxsize=8)
def _separator(separators):
    """A pattern matching any one of `separators`."""
    return re.compile(f"[{re.escape(separators)}]")


#: What an empty spreadsheet row (";;", ",,,", '"";""') is made of.
_EMPTY_ROW = ',;\t" '


def _fields(line, separators=_SEPARATORS):
    """Split a line at `separators` (commas, semicolons and tabs) outside double quotes and <...>."""
    if '"' not in line and "<" not in line:
        # Nothing to stay inside of (most lines of a long list): the same split, faster.
        return [field.strip() for field in _separator(separators).split(line)]
    fields, current, quoted, bracketed = [], [], False, False
    for char in line:
        if char == '"' and not bracketed:
            quoted = not quoted
        elif char == "<" and not quoted:
            bracketed = True
        elif char == ">" and not quoted:
            bracketed = False
        elif char in separators and not (quoted or bracketed):
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


# What each kind of bad line is told. Lazy: a list of 100,000 bad lines translates only
# the ones it shows (MAX_BAD_LINES_LISTED).
INVALID = gettext_lazy("Enter a valid email address with a full domain (like name@example.com).")
NO_ADDRESS = gettext_lazy(
    "a name without an email address; add it (like Jane Doe <jane@example.com>)"
)
TWO_AT = gettext_lazy("two @ signs; an address has exactly one (like name@example.com)")
GLUED = gettext_lazy(
    "two addresses without a separator between them; put a comma or a line break between them"
)
NO_DOMAIN = gettext_lazy("no domain after the @ (like name@example.com)")
NO_LOCAL = gettext_lazy("nothing before the @ (like name@example.com)")
UNCLOSED = gettext_lazy("an unclosed bracket: “<” without “>” (like Jane Doe <jane@example.com>)")
SEVERAL_WITH_NAMES = gettext_lazy(
    "several addresses and names on one line; put each recipient on a line of its own"
)
NON_ASCII_LOCAL = gettext_lazy(
    "the part before @ has non-ASCII characters; such addresses (SMTPUTF8) "
    "cannot be sent to, ask the recipient for another address"
)


def _split_line(line, separators=_SEPARATORS):
    """Return ([(address, name), ...], problem); names only come from CSV-style rows."""
    addresses, names = [], []
    for field in _fields(line, separators):
        if "<" in field and ">" not in field and "@" in field:
            return [], UNCLOSED
        if "<" in field and ">" in field:
            name, address = parseaddr(field)
            addresses.append((address or field, name))
        elif "@" in field:
            addresses.append((_unquote(field), ""))
        elif field:
            names.append(_unquote(field))
    if not addresses:
        return [], NO_ADDRESS
    if len(addresses) == 1:
        address, name = addresses[0]
        return [(address, name or (names[0] if names else ""))], None
    if names:
        return [], SEVERAL_WITH_NAMES
    return addresses, None


# Header cells, compared without case, spaces, hyphens and underscores ("E-Mail-Adresse"
# is "emailadresse"), in English and German as spreadsheets name them.
_EMAIL_HEADERS = {
    "email",
    "emails",
    "mail",
    "emailaddress",
    "emailadresse",
    "mailadresse",
    # Not "Adresse" or "Address": in a contact list that is the postal address.
    "recipient",
    "empfänger",
    "empfaenger",
}
_NAME_HEADERS = {"name", "fullname", "displayname", "anzeigename", "vollständigername"}
_FIRST_NAME_HEADERS = {"vorname", "firstname", "givenname", "first"}
_LAST_NAME_HEADERS = {"nachname", "lastname", "surname", "familienname", "familyname", "last"}
_HEADER_JUNK = re.compile(r"[\s\-_.:]")


@dataclass(frozen=True)
class Columns:
    """Where a header row says the address and the name are."""

    separator: str
    email: int
    name: int | None = None
    first_name: int | None = None
    last_name: int | None = None

    def read(self, line):
        """Return ([(address, name)], problem), or None when the row is not in columns
        (one field only: a line pasted under the header, read as any line is)."""
        fields = _fields(line, self.separator)
        if len(fields) < 2:
            return None
        if not any(fields):
            return [], None  # an empty spreadsheet row (";;")
        cell = fields[self.email] if self.email < len(fields) else ""
        if "@" not in cell:
            if "@" in line:
                return None  # the address is elsewhere: read the line as any line
            cell = ""
        name = self._name(fields)
        if not cell:
            return [], NO_ADDRESS
        pairs, problem = _split_line(_unquote(cell), ",;")
        if problem is not None or len(pairs) != 1:
            return pairs, problem
        address, cell_name = pairs[0]
        return [(address, name or cell_name)], None

    def _name(self, fields):
        def cell(index):
            return _unquote(fields[index]) if index is not None and index < len(fields) else ""

        if self.name is not None and cell(self.name):
            return cell(self.name)
        return " ".join(part for part in (cell(self.first_name), cell(self.last_name)) if part)


def _header_columns(line):
    """Columns when `line` is a header row naming an address column, else None. The
    separator is the one that splits the header into most cells (sniffed, as a
    spreadsheet export uses one throughout)."""
    best = None
    for separator in (";", ",", "\t"):
        cells = [_HEADER_JUNK.sub("", _unquote(cell).lower()) for cell in _fields(line, separator)]
        if best is None or len(cells) > len(best[1]):
            best = (separator, cells)
    separator, cells = best

    def find(names):
        return next((index for index, cell in enumerate(cells) if cell in names), None)

    email = find(_EMAIL_HEADERS)
    if email is None:
        # "E-Mail (geschäftlich)", "Email Address 1"
        email = next((i for i, cell in enumerate(cells) if "mail" in cell), None)
        if email is None:
            return None
    return Columns(
        separator, email, find(_NAME_HEADERS), find(_FIRST_NAME_HEADERS), find(_LAST_NAME_HEADERS)
    )


def address_problem(address):
    """Return (the address with its domain in ASCII, None) or (None, what is wrong)."""
    local, at, domain = address.rpartition("@")
    if not at:
        return None, NO_ADDRESS
    if "@" in local:
        # "hans@firma.deerika@firma.de": a domain between two @ is two addresses glued.
        between = local.partition("@")[2]
        return None, (GLUED if "." in between else TWO_AT)
    if not local:
        return None, NO_LOCAL
    if not domain:
        return None, NO_DOMAIN
    if not local.isascii():
        return None, NON_ASCII_LOCAL
    domain = _ascii_domain(domain)
    if domain is None:
        return None, INVALID
    if len(local) > MAX_LOCAL_PART_LENGTH:
        return None, _("the part before @ is longer than %(count)s characters") % {
            "count": MAX_LOCAL_PART_LENGTH
        }
    address = f"{local}@{domain}"
    if len(address) > MAX_ADDRESS_LENGTH:
        return None, _("the address is longer than %(count)s characters") % {
            "count": MAX_ADDRESS_LENGTH
        }
    try:
        validate_recipient_email(address)
    except ValidationError:
        return None, INVALID
    return address, None


def ascii_address(address):
    """Return the address with its domain in ASCII (punycode), or raise ValidationError."""
    address, problem = address_problem(address)
    if problem is not None:
        raise ValidationError(str(problem))
    return address


#: RFC 1035: a label has at most 63 characters (the address's length is checked after).
_MAX_LABEL_LENGTH = 63
# The dots IDNA splits a domain at (encodings.idna.dots).
_DOTS = re.compile("[.\u3002\uff0e\uff61]")


@functools.lru_cache(maxsize=8192)
def _ascii_domain(domain):
    """The domain in ASCII (punycode), or None. Cached: a long list has few domains."""
    if domain.isascii():
        try:
            return punycode(domain)
        except UnicodeError:
            return None
    labels = _DOTS.split(domain)
    trailing = labels[-1] == ""
    if trailing:
        labels.pop()
    ascii_labels = [_ascii_label(label) for label in labels]
    if None in ascii_labels:
        return None
    return ".".join(ascii_labels) + ("." if trailing else "")


@functools.lru_cache(maxsize=65536)
def _ascii_label(label):
    """One label in ASCII, exactly as Python's IDNA 2003 codec (Django's punycode()) gives
    it, or None.

    The codec's nameprep is pure Python and costs ~75 µs per label, and its punycode step
    grows with the square of the label's length (4 ms for a label of 1,000 characters):
    over 7 ms per line of a list of distinct international domains. A label of letters,
    digits and hyphens written left to right is prepared here the way nameprep would
    (RFC 3491: case folding, then NFKC, Unicode 3.2), with no step to refuse; only the
    punycode step is left, on at most 63 characters. Any other label goes through the
    codec, at most 63 characters of it."""
    if not label or len(label) > _MAX_LABEL_LENGTH:
        return None
    if label.isascii():
        return label
    mapped = [_nameprep_char(char) for char in label]
    prepared = "".join(mapped) if None not in mapped else ""
    if (
        prepared
        and not prepared.isascii()
        and not prepared.startswith("xn--")
        and unicodedata.ucd_3_2_0.normalize("NFKC", prepared) == prepared
    ):
        encoded = "xn--" + prepared.encode("punycode").decode("ascii")
    else:
        try:
            encoded = idna_codec.ToASCII(label).decode("ascii")
        except UnicodeError:
            return None
    return encoded if len(encoded) <= _MAX_LABEL_LENGTH else None


@functools.lru_cache(maxsize=8192)
def _nameprep_char(char):
    """What nameprep (RFC 3491, Unicode 3.2) makes of a hyphen, or of a letter or digit
    written left to right: itself or its case folding (table B.2), when that is made of
    such characters again; None for any other character (the codec decides then). Such
    characters are never mapped to nothing (table B.1) nor prohibited, and a label
    without right-to-left characters passes the bidi check."""
    if char == "-":
        return char
    ucd = unicodedata.ucd_3_2_0
    if ucd.category(char)[0] not in "LN" or ucd.bidirectional(char) in ("R", "AL"):
        return None
    folded = stringprep.map_table_b2(char)
    if folded != char and any(_nameprep_char(part) != part for part in folded):
        return None
    return folded


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


#: Lines a list may have per recipient a job takes (blank lines, comments, a header and
#: duplicates fit in twice as many; a file of one-character lines does not).
LINES_PER_RECIPIENT = 2


def max_lines(max_recipients):
    return max_recipients * LINES_PER_RECIPIENT


def too_many_lines(limit):
    return ValidationError(
        _(
            "The list has more than %(count)s lines, the most one job's list may have; "
            "check that it is the right file, or split it and send each part as a job "
            "of its own."
        )
        % {"count": number_format(limit, force_grouping=True)}
    )


def parse_recipients(text, max_recipients=None):
    """Return (recipients without duplicates, number of duplicates dropped).

    Raises RecipientListError listing the bad lines (the first MAX_BAD_LINES_LISTED, and
    how many there are), or ValidationError before reading a line when the text has more
    than max_lines(max_recipients) lines, and as soon as there are more than
    `max_recipients`; nothing is returned then.

    The lines are read one at a time and only the listed bad lines are kept, so the
    memory a list takes is its text and its recipients. A header row (a line without @
    naming an address column, like "E-Mail;Name" or "Email,Vorname,Nachname") says which
    column holds the address and the name, and which separator the rows use.
    """
    if max_recipients is not None:
        limit = max_lines(max_recipients)
        if max(text.count("\n"), text.count("\r")) >= limit:
            raise too_many_lines(limit)
    recipients, seen, bad, bad_count, duplicates = [], set(), [], 0, 0
    columns = None

    def bad_line(number, line, problem):
        nonlocal bad_count
        bad_count += 1
        if len(bad) < MAX_BAD_LINES_LISTED:
            bad.append(BadLine(number, _shown(line), str(problem)))

    # Universal newlines: "\r\n" (Windows) and "\r" (old Macs) end lines too.
    for number, raw in enumerate(io.StringIO(text, newline=None), start=1):
        line = raw.strip().lstrip("\ufeff")
        if not line or line.startswith("#") or not line.strip(_EMPTY_ROW):
            continue
        problem = _line_problem(line)
        if problem:
            bad_line(number, line, problem)
            continue
        if "@" not in line and "mail" in line.lower():
            header = _header_columns(line)
            if header is not None:
                if not recipients and columns is None:
                    columns = header
                continue  # a header row (again, when files were joined)
        read = columns.read(line) if columns is not None else None
        pairs, problem = read if read is not None else _split_line(line)
        # "is not None": a lazy message's truth value would translate it.
        if problem is not None:
            bad_line(number, line, problem)
            continue
        for typed, name in pairs:
            address, problem = address_problem(typed)
            if problem is not None:
                bad_line(number, line, problem)
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
