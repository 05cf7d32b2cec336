"""What a mail server's refusal means, read from its enhanced status code (RFC 3463).

A reply code alone says little: "550" is used for an unknown mailbox and for a policy or
reputation block alike. The enhanced status code ("5.1.1", "5.7.1") that nearly every
server adds says which it is. Only what is certainly undeliverable puts the address on
the suppression list (an address that does not exist, 5.1.x, or a disabled mailbox,
5.2.1); a block for policy or reputation (5.7.x), a routing problem (5.4.x), a full
mailbox (5.2.2) and the rest fail the item without suppressing, so the address is tried
again by the next job. The SMTP client (emails/kind.py) and the bounce reader
(emails/bounces/) classify the same way, through classify().
"""

import re
from dataclasses import dataclass

# "5.1.1" at the start of the reply text (after the reply code), or anywhere in a DSN's
# Status field; the subject and detail are at most three digits (RFC 3463 section 2).
_ENHANCED = re.compile(r"(?<![0-9.])([245])\.([0-9]{1,3})\.([0-9]{1,3})(?![0-9.])")

# Of the 5.1.x codes these are the sender's address, not the recipient's (RFC 3463).
_SENDER_ADDRESS = {"5.1.7", "5.1.8"}


@dataclass(frozen=True)
class Verdict:
    """What a permanent refusal means: the item's reason code (bulkjobs/reasons.py) and
    whether the address goes on the suppression list."""

    code: str
    suppress: bool


def enhanced_code(text):
    """The first enhanced status code in a reply or a DSN Status field ("5.1.1"), or ""."""
    match = _ENHANCED.search(text or "")
    return ".".join(match.groups()) if match else ""


def classify(enhanced):
    """The Verdict of a permanent failure with this enhanced status code ("" if none)."""
    if enhanced.startswith("5.1.") and enhanced not in _SENDER_ADDRESS:
        return Verdict("smtp_address_unknown", True)
    if enhanced == "5.2.1":
        return Verdict("smtp_mailbox_disabled", True)
    if enhanced == "5.2.2":
        return Verdict("smtp_mailbox_full", False)
    if enhanced.startswith("5.7."):
        return Verdict("smtp_policy", False)
    if enhanced.startswith("5.4."):
        return Verdict("smtp_routing", False)
    return Verdict("smtp_rejected", False)


def is_hard(enhanced):
    """Whether the code says the address is certainly undeliverable (suppressed)."""
    return classify(enhanced).suppress if enhanced.startswith("5.") else False
