"""Where `manage.py process_bounces` reads bounce messages from: standard input (an MTA's
pipe alias, one message per call), a Maildir, or an IMAP mailbox over TLS.

Each message goes to emails.bounces.process_message(); a Counter of its results is
returned. A message is marked done only after it was processed: a Maildir message is
moved from new/ to cur/ with the Seen flag (kept, not deleted, for a person to look at;
the next call reads new/ only), an IMAP message is flagged \\Seen (the next call asks
for UNSEEN ones). A database error stops the reading there, leaving that message and
the rest for the next call.
"""

import imaplib
import os
import ssl
from collections import Counter
from pathlib import Path
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .bounces import process_message


def from_bytes(raw, envelope_recipient=""):
    """One message (standard input)."""
    return Counter([process_message(raw, envelope_recipient)])


def from_maildir(directory):
    """Every message in the Maildir's new/, each moved to cur/ (flag Seen) once done."""
    root = Path(directory)
    new, cur = root / "new", root / "cur"
    if not new.is_dir() or not cur.is_dir():
        raise ImproperlyConfigured(f"{directory} is not a Maildir (it needs new/ and cur/).")
    results = Counter()
    for path in sorted(p for p in new.iterdir() if p.is_file() and not p.name.startswith(".")):
        results[process_message(path.read_bytes())] += 1
        # Maildir's info suffix: ":2," and the flags; S is "seen".
        os.replace(path, cur / f"{path.name.split(':', 1)[0]}:2,S")
    return results


def imap_settings(url=None):
    """(host, port, user, password, mailbox) from BOUNCE_IMAP_URL
    (imaps://user:password@host:993/INBOX)."""
    url = url if url is not None else getattr(settings, "BOUNCE_IMAP_URL", "")
    if not url:
        raise ImproperlyConfigured("Set BOUNCE_IMAP_URL (imaps://user:password@host/INBOX).")
    parts = urlsplit(url)
    if parts.scheme != "imaps" or not parts.hostname or not parts.username:
        raise ImproperlyConfigured(
            "BOUNCE_IMAP_URL must be imaps://user:password@host[:port][/mailbox] (IMAP over "
            "TLS only: the password is never sent in the clear)."
        )
    mailbox = unquote(parts.path.lstrip("/")) or "INBOX"
    return (
        parts.hostname,
        parts.port or 993,
        unquote(parts.username),
        unquote(parts.password or ""),
        mailbox,
    )


def from_imap(url=None, ssl_context=None, timeout=30):
    """Every unseen message of the IMAP mailbox, each flagged \\Seen once done."""
    host, port, user, password, mailbox = imap_settings(url)
    context = ssl_context or ssl.create_default_context()
    results = Counter()
    with imaplib.IMAP4_SSL(host, port, ssl_context=context, timeout=timeout) as imap:
        imap.login(user, password)
        status, _data = imap.select(_quoted(mailbox))
        if status != "OK":
            raise ImproperlyConfigured(f"The IMAP mailbox {mailbox!r} cannot be opened.")
        status, data = imap.uid("SEARCH", None, "UNSEEN")
        uids = data[0].split() if status == "OK" and data and data[0] else []
        for uid in uids:
            status, fetched = imap.uid("FETCH", uid, "(BODY.PEEK[])")
            raw = next((part[1] for part in fetched if isinstance(part, tuple)), None)
            if status != "OK" or raw is None:
                continue
            results[process_message(raw)] += 1
            imap.uid("STORE", uid, "+FLAGS", "(\\Seen)")
        imap.close()
    return results


def _quoted(mailbox):
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'
