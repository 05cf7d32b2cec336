"""Building the card email: built once per card per batch, then addressed per recipient.

Rendering the templates and serialising the MIME tree cost ~3.5 ms per message, more
than the SMTP conversation. So each card's message is built and serialised once, with
placeholders for what differs between recipients (To, Message-ID, the unsubscribe
link), and each recipient's bytes are made by substitution. The parts are 8-bit or
base64 encoded by Django with lines far below 998 octets, so the placeholders appear
verbatim in the serialised bytes and substitution keeps the message valid.
"""

from email.utils import formataddr, parseaddr

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string

from cards.vcard import build_vcard, vcard_filename

from .unsubscribe import unsubscribe_url

_UNSUBSCRIBE_PLACEHOLDER = "__UNSUBSCRIBE_URL__"
_TO_PLACEHOLDER = "to-placeholder@invalid.example"
_MESSAGE_ID_PLACEHOLDER = "<message-id-placeholder@invalid.example>"


def message_id_domain():
    return (
        settings.EMAIL_MESSAGE_ID_DOMAIN
        or parseaddr(settings.DEFAULT_FROM_EMAIL)[1].rpartition("@")[2]
        or "localhost"
    )


def message_id_for(item, domain=None):
    """Stable per item, so a resent or retried message is recognisably the same one."""
    return f"<bulk-email.{item.job_id}.{item.pk}@{domain or message_id_domain()}>"


class CardEmail:
    """One card's email for one job, ready to be addressed to any recipient."""

    def __init__(self, job, card):
        self.job = job
        self.card = card
        context = {
            "card": card,
            "company": card.company,
            "job": job,
            "message": job.message,
            "unsubscribe_url": _UNSUBSCRIBE_PLACEHOLDER,
        }
        self.text = render_to_string("emails/card_email.txt", context)
        self.html = render_to_string("emails/card_email.html", context)
        self.vcard = build_vcard(card)
        self.vcard_name = vcard_filename(card)

    def _rendered(self, item, connection, link, message_id=None):
        message = EmailMultiAlternatives(
            subject=self.job.subject,
            body=self.text.replace(_UNSUBSCRIBE_PLACEHOLDER, link),
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[_address(item)],
            connection=connection,
            headers={
                "Message-ID": message_id or message_id_for(item),
                "List-Unsubscribe": f"<{link}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                "Auto-Submitted": "auto-generated",
            },
        )
        message.attach_alternative(self.html.replace(_UNSUBSCRIBE_PLACEHOLDER, link), "text/html")
        message.attach(self.vcard_name, self.vcard, "text/vcard")
        return message

    def for_recipient(self, item, connection=None):
        """A fully rendered message (for previews and non-bulk use)."""
        link = unsubscribe_url(self.job.company_id, item.recipient_email)
        return self._rendered(item, connection, link)

    def prebuilt_for(self, item, connection=None):
        """The same message as for_recipient(), made by substitution into cached bytes."""
        if self._template is None:
            placeholder = _Placeholder()
            message = self._rendered(
                placeholder, None, _UNSUBSCRIBE_PLACEHOLDER, _MESSAGE_ID_PLACEHOLDER
            ).message()
            self._charset = message.get_charset()
            self._template = message.as_bytes(linesep="\r\n")
            self._domain = message_id_domain()
        link = unsubscribe_url(self.job.company_id, item.recipient_email)
        to_header = _encoded_address(item)
        data = (
            self._template.replace(_TO_PLACEHOLDER.encode(), to_header.encode("ascii"))
            .replace(
                _MESSAGE_ID_PLACEHOLDER.encode(), message_id_for(item, self._domain).encode("ascii")
            )
            .replace(_UNSUBSCRIBE_PLACEHOLDER.encode(), link.encode("ascii"))
        )
        return PrebuiltEmail(data, self._charset, item.recipient_email, connection)

    _template = None
    _charset = None
    _domain = None


def _address(item):
    # Names come from pasted lists: no line breaks may reach a header.
    name = " ".join(item.recipient_name.split())
    return formataddr((name, item.recipient_email)) if name else item.recipient_email


def _encoded_address(item):
    name = " ".join(item.recipient_name.split())
    if not name:
        return item.recipient_email
    return formataddr((name, item.recipient_email), charset="utf-8")


class _Placeholder:
    """Stands in for an item while the shared message bytes are built."""

    job_id = pk = 0
    recipient_email = _TO_PLACEHOLDER
    recipient_name = ""


class _SerialisedMessage:
    """What Django's mail backends need from EmailMessage.message(): bytes and a charset."""

    def __init__(self, data, charset):
        self._data = data
        self._charset = charset

    def as_bytes(self, unixfrom=False, linesep="\n"):
        return self._data if linesep == "\r\n" else self._data.replace(b"\r\n", linesep.encode())

    def get_charset(self):
        return self._charset


class PrebuiltEmail(EmailMultiAlternatives):
    """An EmailMessage whose MIME bytes were made in advance; sent by any Django backend."""

    def __init__(self, data, charset, recipient, connection=None):
        super().__init__(
            to=[recipient], from_email=settings.DEFAULT_FROM_EMAIL, connection=connection
        )
        self._serialised = _SerialisedMessage(data, charset)

    def message(self, *args, **kwargs):
        return self._serialised
