"""Building the card email: rendered once per card per batch, then addressed per recipient.

Rendering the templates is the expensive part, so each card's text and HTML are
rendered once with a placeholder for the recipient's unsubscribe link, and every
recipient's message is made by substituting it.
"""

from email.utils import formataddr, parseaddr

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string

from cards.vcard import build_vcard, vcard_filename

from .unsubscribe import unsubscribe_url

_UNSUBSCRIBE_PLACEHOLDER = "__UNSUBSCRIBE_URL__"


def message_id_domain():
    return settings.EMAIL_MESSAGE_ID_DOMAIN or parseaddr(settings.DEFAULT_FROM_EMAIL)[1].rpartition("@")[2] or "localhost"


def message_id_for(item):
    """Stable per item, so a resent or retried message is recognisably the same one."""
    return f"<bulk-email.{item.job_id}.{item.pk}@{message_id_domain()}>"


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

    def for_recipient(self, item, connection=None):
        link = unsubscribe_url(self.job.company_id, item.recipient_email)
        to = formataddr((item.recipient_name, item.recipient_email)) if item.recipient_name else item.recipient_email
        message = EmailMultiAlternatives(
            subject=self.job.subject,
            body=self.text.replace(_UNSUBSCRIBE_PLACEHOLDER, link),
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[to],
            connection=connection,
            headers={
                "Message-ID": message_id_for(item),
                "List-Unsubscribe": f"<{link}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                "Auto-Submitted": "auto-generated",
            },
        )
        message.attach_alternative(self.html.replace(_UNSUBSCRIBE_PLACEHOLDER, link), "text/html")
        message.attach(self.vcard_name, self.vcard, "text/vcard")
        return message
