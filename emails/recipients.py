"""Parsing and validating pasted or uploaded recipient lists.

Accepted line forms: `jane@example.com`, `Jane Doe <jane@example.com>`, and CSV rows
`jane@example.com,Jane Doe` or `Jane Doe,jane@example.com`. Blank lines and lines
starting with `#` are ignored; a CSV header row (a line with "email" in it but no @) too.
"""

import csv
import io
from dataclasses import dataclass
from email.utils import parseaddr

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator

# No allow-list: Django's default accepts `user@localhost`, which no real recipient has.
validate_recipient_email = EmailValidator(
    message="Enter a valid email address with a full domain (like name@example.com).",
    allowlist=[],
)


@dataclass(frozen=True)
class Recipient:
    email: str
    name: str = ""

    @property
    def key(self):
        return self.email.lower()


@dataclass(frozen=True)
class BadLine:
    line_number: int
    text: str
    problem: str

    def __str__(self):
        return f"Line {self.line_number}: {self.problem} ({self.text!r})"


class RecipientListError(ValidationError):
    """Some lines are invalid; carries every bad line so the user can fix them at once."""

    def __init__(self, bad_lines):
        self.bad_lines = list(bad_lines)
        super().__init__([str(line) for line in self.bad_lines])


def _split_line(line):
    if "<" in line and ">" in line:
        name, address = parseaddr(line)
        return address, name
    fields = next(csv.reader(io.StringIO(line)))
    fields = [f.strip() for f in fields if f.strip()]
    addresses = [f for f in fields if "@" in f]
    if len(addresses) != 1:
        return (fields[0] if fields else line), ""
    names = [f for f in fields if f is not addresses[0]]
    return addresses[0], (names[0] if names else "")


def parse_recipients(text):
    """Return (recipients without duplicates, number of duplicates dropped).

    Raises RecipientListError listing every bad line; nothing is returned then.
    """
    recipients, seen, bad, duplicates = [], set(), [], 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip().lstrip("\ufeff")
        if not line or line.startswith("#"):
            continue
        if "@" not in line and "email" in line.lower():
            continue  # a CSV header row
        address, name = _split_line(line)
        try:
            validate_recipient_email(address)
        except ValidationError as exc:
            bad.append(BadLine(number, line, exc.messages[0]))
            continue
        recipient = Recipient(email=address, name=name[:200])
        if recipient.key in seen:
            duplicates += 1
            continue
        seen.add(recipient.key)
        recipients.append(recipient)
    if bad:
        raise RecipientListError(bad)
    return recipients, duplicates
