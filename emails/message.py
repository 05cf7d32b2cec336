"""Building the card email: built once per card per batch, then addressed per recipient.

Rendering the templates and serialising the MIME tree cost ~3.5 ms per message, more
than the SMTP conversation. So each card's message is built and serialised once, with
placeholders for what differs between recipients (To, Message-ID, the unsubscribe
link), and each recipient's bytes are made from those cached bytes: the header
placeholders are substituted, and the text and HTML bodies (which contain the
unsubscribe link) are substituted as text and then quoted-printable encoded, so every
body line stays within RFC 2045's 76 characters however long the link or the personal
message. The To and List-Unsubscribe fields are replaced whole, folded for the
recipient. When a placeholder is not found exactly once in the cached headers (a subject
that quotes one, say) the message is built normally instead.

Only Django's own mail backends serialise a message with message(); an ESP's API backend
(django-anymail) reads the message's attributes instead, so it gets the fully rendered
message, with anymail metadata naming the company, job and item, which the ESP echoes
back in its bounce and complaint webhooks (emails/webhooks.py).

Clean bytes (#21): every part is 7bit (the bodies and the vCard quoted-printable), the
top-level header block is written here, each field folded within 78 characters where it
can be (display names as encoded words of email.header, a non-ASCII subject by
policy.SMTP's folder) and never over 998, and with DKIM configured (emails/signing.py) each message is signed as it is
addressed. From names the company on the platform's address ("Acme via Business Cards"),
Feedback-ID names job, company and platform for the mailbox providers' feedback loops.
"""

import binascii
import logging
from email import policy
from email.header import Header, decode_header, make_header
from email.utils import formataddr, getaddresses, make_msgid, parseaddr

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.translation import gettext

from cards.locale import company_locale
from cards.vcard import build_vcard, vcard_filename
from wallet import platforms

from . import signing
from .unsubscribe import unsubscribe_url

log = logging.getLogger(__name__)

_UNSUBSCRIBE_PLACEHOLDER = "__UNSUBSCRIBE_URL__"
_TO_PLACEHOLDER = "to-placeholder@invalid.example"
_MESSAGE_ID_PLACEHOLDER = "<message-id-placeholder@invalid.example>"
# The fields substituted whole, as fold() writes them for the placeholders: a recipient's
# To or link may need folding where the placeholder did not.
_TO_LINE = b"To: " + _TO_PLACEHOLDER.encode() + b"\r\n"
_UNSUBSCRIBE_LINE = b"List-Unsubscribe: <" + _UNSUBSCRIBE_PLACEHOLDER.encode() + b">\r\n"


def quoted_printable(text):
    """Text as UTF-8 quoted-printable with CRLF line breaks: no line over 76 characters."""
    data = text.replace("\r\n", "\n").replace("\n", "\r\n").encode()
    # binascii's encoder is C: this runs twice per email.
    return binascii.b2a_qp(data, istext=True)


#: Lines of a header block that fit (RFC 5322 2.1.1: 78 SHOULD, 998 MUST).
FOLD_AT = 78
_ADDRESS_FIELDS = {"from", "to", "cc", "reply-to", "sender"}


def fold(name, value):
    """One header field as CRLF-terminated bytes, folded within FOLD_AT where it can be.

    Non-ASCII display names become encoded words of email.header.Header (0.2 ms for a
    long name; the standard library's policy.SMTP folder takes 28 ms, and a batch folds a
    To per recipient); any other non-ASCII value (a subject) uses that folder.
    """
    line = f"{name}: {value}"
    if value.isascii() and len(line) <= FOLD_AT:
        return line.encode("ascii") + b"\r\n"
    if name.lower() in _ADDRESS_FIELDS:
        words = _address_words(name, value)
    elif not value.isascii():
        return policy.SMTP.header_factory(name, value).fold(policy=policy.SMTP).encode("ascii")
    else:
        words = value.split(" ")
    # Filled greedily at the words' spaces. A word too long for a line of its own (a link
    # in angle brackets) stays where it is: some readers of List-Unsubscribe keep the
    # space a fold before it would leave.
    lines, current = [], f"{name}:"
    for word in words:
        if len(current) + 1 + len(word) > FOLD_AT and current != f"{name}:":
            lines.append(current)
            current = ""
        current += " " + word
    lines.append(current)
    return "\r\n".join(lines).encode("ascii") + b"\r\n"


def _address_words(field, value):
    """The foldable words of an address list: encoded words of non-ASCII names (RFC 2047
    section 5(3); the space between two of them is not part of the name), the quoted or
    plain words of ASCII ones, and each <address>."""
    pairs = getaddresses([value])
    words = []
    for number, (name, address) in enumerate(pairs, start=1):
        if "=?" in name:
            # formataddr() made one encoded word of a non-ASCII name, however long.
            name = str(make_header(decode_header(name)))
        if name and not name.isascii():
            words += Header(name, "utf-8", header_name=field).encode(splitchars=" ").split()
        elif name:
            words += formataddr((name, "x@x")).rpartition(" <")[0].split(" ")
        words.append(f"<{address}>" + ("," if number < len(pairs) else ""))
    return words


def _seven_bit(message):
    """Every text part quoted-printable (Django leaves them 8bit, the vCard too): 7bit
    bytes need no 8BITMIME, which no relay on the way can convert and break a signature."""
    for part in message.walk():
        if part.get_content_maintype() == "text":
            body = part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")
            del part["Content-Transfer-Encoding"]
            part["Content-Transfer-Encoding"] = "quoted-printable"
            part.set_payload(quoted_printable(body).decode("ascii"))


class CardMessage(EmailMultiAlternatives):
    """Django's message with 7bit parts, a header block written and folded here, and a
    DKIM signature when the app signs (module docstring)."""

    #: Set False for the bytes a job prebuilds (each recipient's message is signed).
    sign = True

    def message(self):
        return _SerialisedMessage(self.serialise(), None)

    def serialise(self):
        """The message's bytes, CRLF line ends: headers, an empty line, the MIME body."""
        message = super().message()
        _seven_bit(message)
        body = message.as_bytes(linesep="\r\n").partition(b"\r\n\r\n")[2]
        fields = [
            ("From", self.from_email),
            ("To", ", ".join(self.to)),
            ("Subject", self.subject),
            ("Date", message["Date"]),
            ("Message-ID", self.extra_headers["Message-ID"]),
        ]
        if self.reply_to:
            fields.append(("Reply-To", ", ".join(self.reply_to)))
        fields += [
            ("MIME-Version", "1.0"),
            ("Content-Type", message["Content-Type"]),
        ]
        fields += [(n, v) for n, v in self.extra_headers.items() if n != "Message-ID"]
        head = b"".join(fold(name, str(value)) for name, value in fields)
        if self.sign and (signer := signing.signer()) is not None:
            head = signer.signature(head, signer.body_hash(body)) + head
        return head + b"\r\n" + body


def message_id_domain():
    return (
        settings.EMAIL_MESSAGE_ID_DOMAIN
        or parseaddr(settings.DEFAULT_FROM_EMAIL)[1].rpartition("@")[2]
        or "localhost"
    )


def message_id_for(item, domain=None, key=""):
    """Stable per item, so a resent or retried message is recognisably the same one; the
    job's random key keeps two databases sending at one domain from repeating ids."""
    key = f".{key}" if key else ""
    return f"<bulk-email.{item.job_id}.{item.pk}{key}@{domain or message_id_domain()}>"


def sender_address():
    """DEFAULT_FROM_EMAIL's address: the platform's, on which every company sends."""
    return parseaddr(settings.DEFAULT_FROM_EMAIL)[1]


def platform_name():
    """The platform as recipients know it: DEFAULT_FROM_EMAIL's name, else its domain."""
    name, address = parseaddr(settings.DEFAULT_FROM_EMAIL)
    return name or address.rpartition("@")[2]


def from_header(company):
    """ "Acme via Business Cards" <cards@platform>: the company is who the recipient knows,
    the address is the platform's, whose domain has SPF, DKIM and DMARC."""
    with company_locale(company):
        name = gettext("%(company)s via %(platform)s") % {
            "company": " ".join(company.name.split()),
            "platform": platform_name(),
        }
    return formataddr((name, sender_address()))


def feedback_id(job, company):
    """Gmail's Feedback-ID (job:company:type:sender): its feedback loop reports complaint
    rates per value, so a company or job that draws complaints can be told apart."""
    platform = sender_address().rpartition("@")[2] or "platform"
    return f"{job.pk or 0}:{company.slug}:card:{platform}"


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
            "imprint": card.company.imprint.strip(),
            "platform_imprint": settings.PLATFORM_IMPRINT.strip(),
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
        company = self.card.company
        message = CardMessage(
            subject=self.job.subject,
            body=self.text.replace(_UNSUBSCRIBE_PLACEHOLDER, link),
            from_email=from_header(company),
            to=[_address(item)],
            connection=connection,
            reply_to=self.reply_to,
            headers={
                "Message-ID": message_id or message_id_for(item, key=self.job.message_id_key),
                "Content-Language": company.language,
                "List-Unsubscribe": f"<{link}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                "Feedback-ID": feedback_id(self.job, company),
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

    def prebuild(self):
        """Make the bytes prebuilt_for() shares between recipients, if not made yet. Once
        made, a CardEmail only reads its state: lanes may share it (emails.kind.CardEmails)."""
        if self._template is None:
            self._template = self._prebuild()

    def prebuilt_for(self, item, connection=None):
        """The same message as for_recipient(), made from cached bytes."""
        self.prebuild()
        if self._template is _NOT_PREBUILT:
            return self.for_recipient(item, connection)
        fields, prefix, between, tail = self._template
        link = unsubscribe_url(self.job.company_id, item.recipient_email)
        message_id = message_id_for(item, self._domain, self.job.message_id_key)
        fields = (
            fields.replace(_TO_LINE, fold("To", _address(item)))
            .replace(_MESSAGE_ID_PLACEHOLDER.encode(), message_id.encode("ascii"))
            .replace(_UNSUBSCRIBE_LINE, fold("List-Unsubscribe", f"<{link}>"))
        )
        text = quoted_printable(self.text.replace(_UNSUBSCRIBE_PLACEHOLDER, link))
        html = quoted_printable(self.html.replace(_UNSUBSCRIBE_PLACEHOLDER, link))
        if self._signer is not None:
            fields = self._signer.signature(fields, self._body_hash(text, html)) + fields
        data = b"".join((fields, b"\r\n", prefix, text, between, html, tail))
        return PrebuiltEmail(data, item.recipient_email, connection)

    def _body_hash(self, text, html):
        """The DKIM body hash, the shared parts' canonical form made once (_prebuild)."""
        prefix_hash, between, tail = self._canonical
        if not (text.endswith(b"\r\n") and html.endswith(b"\r\n")):
            # A body that ends mid-line would join the next part's first line.
            _fields, prefix, raw_between, raw_tail = self._template
            return self._signer.body_hash(b"".join((prefix, text, raw_between, html, raw_tail)))
        hasher = prefix_hash.copy()
        for piece in (signing.canonical_lines(text), between, signing.canonical_lines(html)):
            hasher.update(piece)
        hasher.update(tail)
        return hasher.digest()

    def _prebuild(self):
        """Return (the header fields, the body up to the text, the bytes between the
        bodies, the rest).

        Or _NOT_PREBUILT when a placeholder or body is not found exactly once, so that
        substitution could change the wrong bytes.
        """
        message = self._rendered(
            _Placeholder(), None, _UNSUBSCRIBE_PLACEHOLDER, _MESSAGE_ID_PLACEHOLDER
        )
        message.sign = False
        fields, _, body = message.serialise().partition(b"\r\n\r\n")
        fields += b"\r\n"
        text, html = quoted_printable(self.text), quoted_printable(self.html)
        if body.count(text) == 1 and body.count(html) == 1:
            prefix, _, rest = body.partition(text)
            between, _, tail = rest.partition(html)
            placeholders = (_TO_LINE, _MESSAGE_ID_PLACEHOLDER.encode(), _UNSUBSCRIBE_LINE)
            if all(fields.count(p) == 1 for p in placeholders) and (
                fields.count(_UNSUBSCRIBE_PLACEHOLDER.encode()) == 1
            ):
                self._domain = message_id_domain()
                self._signer = signing.signer()
                self._canonical = (
                    signing.BodyHasher(signing.canonical_lines(prefix)),
                    signing.canonical_lines(between),
                    signing.canonical_end(tail),
                )
                return fields, prefix, between, tail
        log.debug("Job %s, card %s: messages built one by one", self.job.pk, self.card.pk)
        return _NOT_PREBUILT

    _template = None
    _domain = None
    _signer = None
    _canonical = None


#: CardEmail._template when the cached bytes cannot be used.
_NOT_PREBUILT = object()


def _address(item):
    # Names come from pasted lists: no line breaks may reach a header.
    name = " ".join(item.recipient_name.split())
    return formataddr((name, item.recipient_email)) if name else item.recipient_email


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

    def __init__(self, data, recipient, connection=None):
        super().__init__(
            to=[recipient], from_email=settings.DEFAULT_FROM_EMAIL, connection=connection
        )
        # 7bit ASCII throughout: no charset to declare to the backend.
        self._serialised = _SerialisedMessage(data, None)

    def message(self, *args, **kwargs):
        return self._serialised
