"""Building the card email: built once per card per batch, then addressed per recipient.

Rendering the templates and serialising the MIME tree cost ~3.5 ms per message, more
than the SMTP conversation. So each card's message is built and serialised once, with
placeholders for what differs between recipients (To, Message-ID, the unsubscribe
link), and each recipient's bytes are made from those cached bytes: the header
placeholders are substituted, and the text and HTML bodies (which contain the
unsubscribe link) are substituted as text and then quoted-printable encoded, so every
body line stays within RFC 2045's 76 characters however long the link or the personal
message. When a placeholder is not found exactly once in the cached headers (a subject
that quotes one, say) the message is built normally instead.

Only Django's own mail backends serialise a message with message(); an ESP's API backend
(django-anymail) reads the message's attributes instead, so it gets the fully rendered
message, with anymail metadata naming the company, job and item, which the ESP echoes
back in its bounce and complaint webhooks (emails/webhooks.py).
"""

import binascii
import logging
from email.utils import formataddr, make_msgid, parseaddr

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.urls import reverse

from cards.locale import company_locale
from cards.vcard import build_vcard, vcard_filename
from wallet import platforms

from .unsubscribe import unsubscribe_url

log = logging.getLogger(__name__)

_UNSUBSCRIBE_PLACEHOLDER = "__UNSUBSCRIBE_URL__"
_TO_PLACEHOLDER = "to-placeholder@invalid.example"
_MESSAGE_ID_PLACEHOLDER = "<message-id-placeholder@invalid.example>"


def quoted_printable(text):
    """Text as UTF-8 quoted-printable with CRLF line breaks: no line over 76 characters."""
    data = text.replace("\r\n", "\n").replace("\n", "\r\n").encode()
    # binascii's encoder is C: this runs twice per email.
    return binascii.b2a_qp(data, istext=True)


class CardMessage(EmailMultiAlternatives):
    """Django's message with its text and HTML bodies quoted-printable encoded.

    Django sends bodies as 8bit unless a line exceeds 998 octets; quoted-printable keeps
    every line within 76 characters, which spam filters expect, and is what the
    prebuilt bytes use too.
    """

    def message(self):
        message = super().message()
        for part in message.walk():
            if part.get_content_type() in ("text/plain", "text/html") and not part.get_filename():
                body = part.get_payload(decode=True).decode(part.get_content_charset())
                del part["Content-Transfer-Encoding"]
                part["Content-Transfer-Encoding"] = "quoted-printable"
                part.set_payload(quoted_printable(body).decode("ascii"))
        return message


def message_id_domain():
    return (
        settings.EMAIL_MESSAGE_ID_DOMAIN
        or parseaddr(settings.DEFAULT_FROM_EMAIL)[1].rpartition("@")[2]
        or "localhost"
    )


def message_id_for(item, domain=None):
    """Stable per item, so a resent or retried message is recognisably the same one."""
    return f"<bulk-email.{item.job_id}.{item.pk}@{domain or message_id_domain()}>"


def wallet_links(cards):
    """{card id: {"apple": url or "", "google": url or ""}}: the Add-to-Wallet links of
    the configured platforms, as on the public card page, for a batch's cards at once.

    The Google link only references the object, so it is offered once a sync created it
    (one query for all the cards); a broken Google setup leaves the link out, not the email.
    """
    links = {card.pk: {"apple": "", "google": ""} for card in cards}
    if platforms.is_configured(platforms.APPLE):
        for card in cards:
            path = reverse("wallet:apple_pass", kwargs={"public_id": card.public_id})
            links[card.pk]["apple"] = settings.SITE_URL + path
    if cards and platforms.is_configured(platforms.GOOGLE):
        from wallet.models import CardWalletState

        synced = set(
            CardWalletState.objects.filter(card__in=cards)
            .exclude(google_object_id="")
            .values_list("card_id", flat=True)
        )
        for card in cards:
            if card.pk in synced:
                try:
                    # Imported here: an email-only run needs no JWT signing at start-up.
                    from wallet.google.links import save_link

                    links[card.pk]["google"] = save_link(card)
                except Exception:
                    log.exception("Google Wallet save link for card %s failed", card.pk)
    return links


class CardEmail:
    """One card's email for one job, ready to be addressed to any recipient.

    `links` is the card's entry of wallet_links(), when the batch computed them for all
    its cards at once.
    """

    def __init__(self, job, card, links=None):
        self.job = job
        self.card = card
        if links is None:
            links = wallet_links([card])[card.pk]
        context = {
            "card": card,
            "company": card.company,
            "job": job,
            "message": job.message,
            "unsubscribe_url": _UNSUBSCRIBE_PLACEHOLDER,
            "apple_wallet_url": links["apple"],
            "google_wallet_url": links["google"],
        }
        self.reply_to = card.company.reply_to_for(card)
        # The boilerplate and the unsubscribe footer in the company's language, whatever
        # language the process (a cron run) or the request (a preview) has.
        with company_locale(card.company):
            self.text = render_to_string("emails/card_email.txt", context)
            self.html = render_to_string("emails/card_email.html", context)
        self.vcard = build_vcard(card)
        self.vcard_name = vcard_filename(card)

    def _rendered(self, item, connection, link, message_id=None):
        message = CardMessage(
            subject=self.job.subject,
            body=self.text.replace(_UNSUBSCRIBE_PLACEHOLDER, link),
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[_address(item)],
            connection=connection,
            reply_to=self.reply_to,
            headers={
                "Message-ID": message_id or message_id_for(item),
                "List-Unsubscribe": f"<{link}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                "Auto-Submitted": "auto-generated",
            },
        )
        message.attach_alternative(self.html.replace(_UNSUBSCRIBE_PLACEHOLDER, link), "text/html")
        message.attach(self.vcard_name, self.vcard, "text/vcard")
        # Read by django-anymail's backends only (sent to the ESP, which returns it in
        # its webhooks); strings, as most ESPs want.
        message.metadata = {
            "company": str(self.job.company_id),
            "job": str(item.job_id),
            "item": str(item.pk),
        }
        return message

    def for_recipient(self, item, connection=None):
        """A fully rendered message (for previews and non-bulk use)."""
        link = unsubscribe_url(self.job.company_id, item.recipient_email)
        return self._rendered(item, connection, link)

    def test_message(self, email, name="", connection=None):
        """The message as the job's recipients get it, addressed to `email` (a person
        sending a test to themselves): its own Message-ID, its unsubscribe link theirs."""
        # Imported here: the models import nothing of this module, but keep it that way.
        from .models import BulkEmailJobItem

        item = BulkEmailJobItem(job=self.job, recipient_email=email, recipient_name=name)
        link = unsubscribe_url(self.job.company_id, email)
        message_id = make_msgid("bulk-email-test", domain=message_id_domain())
        return self._rendered(item, connection, link, message_id)

    def prebuilt_for(self, item, connection=None):
        """The same message as for_recipient(), made from cached bytes."""
        if self._template is None:
            self._template = self._prebuild()
        if self._template is _NOT_PREBUILT:
            return self.for_recipient(item, connection)
        head, between, tail = self._template
        link = unsubscribe_url(self.job.company_id, item.recipient_email)
        head = (
            head.replace(_TO_PLACEHOLDER.encode(), _encoded_address(item).encode("ascii"))
            .replace(
                _MESSAGE_ID_PLACEHOLDER.encode(), message_id_for(item, self._domain).encode("ascii")
            )
            .replace(_UNSUBSCRIBE_PLACEHOLDER.encode(), link.encode("ascii"))
        )
        text = quoted_printable(self.text.replace(_UNSUBSCRIBE_PLACEHOLDER, link))
        html = quoted_printable(self.html.replace(_UNSUBSCRIBE_PLACEHOLDER, link))
        data = b"".join((head, text, between, html, tail))
        return PrebuiltEmail(data, self._charset, item.recipient_email, connection)

    def _prebuild(self):
        """Return (headers up to the text body, bytes between the bodies, the rest).

        Or _NOT_PREBUILT when a placeholder or body is not found exactly once, so that
        substitution could change the wrong bytes.
        """
        message = self._rendered(
            _Placeholder(), None, _UNSUBSCRIBE_PLACEHOLDER, _MESSAGE_ID_PLACEHOLDER
        ).message()
        data = message.as_bytes(linesep="\r\n")
        text, html = quoted_printable(self.text), quoted_printable(self.html)
        if data.count(text) == 1 and data.count(html) == 1:
            head, _, rest = data.partition(text)
            between, _, tail = rest.partition(html)
            placeholders = (_TO_PLACEHOLDER, _MESSAGE_ID_PLACEHOLDER, _UNSUBSCRIBE_PLACEHOLDER)
            if all(head.count(p.encode()) == 1 for p in placeholders):
                self._charset = message.get_charset()
                self._domain = message_id_domain()
                return head, between, tail
        log.debug("Job %s, card %s: messages built one by one", self.job.pk, self.card.pk)
        return _NOT_PREBUILT

    _template = None
    _charset = None
    _domain = None


#: CardEmail._template when the cached bytes cannot be used.
_NOT_PREBUILT = object()


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
