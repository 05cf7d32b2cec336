"""The email kind: sends one batch over one mail connection and maps SMTP replies to outcomes.

SMTP reply classes (RFC 5321 section 4.2.1): 4xx is transient (retried on the email
retry schedule, BULKJOBS_EMAIL_RETRY_SCHEDULE), 5xx is permanent for that recipient; its
enhanced status code (emails/status.py) says whether the address is suppressed (5.1.x,
5.2.1) or kept (5.7.x policy, 5.4.x routing, the rest). 421 means the server is closing the
connection: the item is retried and the connection reopened for the next one. A
refused login or sender affects every item, so the batch stops without spending the
items' attempts (ProviderUnavailable).

At most once: with Django's SMTP backend each message is one transaction of
emails/smtp.py's client, which tells a failure before the final "." (nothing was
delivered: retried) from one after it (the server may have queued the message: the item
fails as "delivery unknown" and is never resent automatically). A server that took the
whole message and then gave no reply within EMAIL_TIMEOUT has stopped answering: the
batch stops there and the job pauses like one whose server is unreachable, so each
connection leaves at most one item "delivery unknown" (instead of one per EMAIL_TIMEOUT,
each perhaps delivered), and the next run probes the server again. "Retry failed items"
leaves delivery-unknown items failed; a person retries them on their own, after a
confirmation (bulkjobs.ops.services). The client also opens a fresh connection after
EMAIL_RECONNECT_AFTER_REJECTIONS error replies without a delivery, before the server's
error limit throttles it.

Any other Django mail backend works too; an ESP's API backend (django-anymail) answers
with exceptions and per-recipient statuses that emails/esp.py maps to the same outcomes.
"""

import math
import smtplib
import socket
import threading

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import get_connection
from django.core.mail.backends.smtp import EmailBackend as SmtpBackend
from django.db.models import Exists, OuterRef, Q
from django.db.models.functions import Lower
from django.utils.translation import gettext_lazy, pgettext_lazy

from bulkjobs.engine import outage
from bulkjobs.engine.ratelimit import parse_rate
from bulkjobs.kinds import BatchHandler, InterruptedPolicy, JobKind, Outcome, ProviderUnavailable
from bulkjobs.reasons import Reason

from . import connections, esp, verp
from .message import CardEmail, wallet_links
from .models import BulkEmailJob, BulkEmailJobItem, EmailSuppression
from .smtp import (
    DELIVERY_UNKNOWN_PREFIX,
    DeliveryUnknown,
    SmtpClient,
    close_quietly,
    reply_time,
    use_helo_name,
)
from .status import classify, enhanced_code
from .unsubscribe import suppress, suppressed_among

#: A lane's cost in this process's and the database's time (its queries, its thread),
#: against which the relay's reply time is weighed (EmailJobKind.min_items_per_lane()).
LANE_COST_SECONDS = 0.02
#: The fewest items a lane gets (a relay far away); the most is the engine's default.
FEWEST_ITEMS_PER_LANE = 3

DELIVERY_UNKNOWN_REASON = DELIVERY_UNKNOWN_PREFIX + (
    "the mail server received the whole message but the connection was lost before it "
    "confirmed ({detail}); not resent automatically. If it did not arrive, use "
    "'Retry items whose delivery is unknown'."
)
#: Start of the reason of an item a dead run left in the middle of its delivery (the
#: kind's interrupted_reason; older items carry the same start).
INTERRUPTED_PREFIX = "Interrupted during delivery;"


def silent_server_cause(timeout):
    """Why a job pauses when its mail server took a whole message and then said nothing."""
    within = f"no reply within {timeout:g} s" if timeout else "no reply before the socket timed out"
    return (
        f"the mail server stopped answering after accepting a message ({within}): its "
        "delivery is unknown, and the other emails wait until the server answers again"
    )


# How "Retry failed items" counts what it left failed, inside a sentence ("2 not retried
# because ... (1 unsubscribed, 1 hard bounce)"): lower case in English, not in German.
SKIPPED_LABELS = {
    EmailSuppression.Reason.UNSUBSCRIBED: pgettext_lazy("items not retried", "unsubscribed"),
    EmailSuppression.Reason.BOUNCED: pgettext_lazy("items not retried", "hard bounce"),
    EmailSuppression.Reason.COMPLAINED: pgettext_lazy("items not retried", "spam complaint"),
    EmailSuppression.Reason.REJECTED: pgettext_lazy("items not retried", "rejected by the ESP"),
}


def _reply_text(text):
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return " ".join(str(text).split())[:500]


def _serialises_messages(connection):
    """Django's own backends send message()'s bytes, so they can take the prebuilt ones;
    others (an ESP's API) read the message's attributes and need the rendered message."""
    return type(connection).__module__.startswith("django.core.mail.backends.")


def reconnect_after_rejections():
    """settings.EMAIL_RECONNECT_AFTER_REJECTIONS, validated when a batch opens."""
    value = getattr(settings, "EMAIL_RECONNECT_AFTER_REJECTIONS", 5)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ImproperlyConfigured(
            f"EMAIL_RECONNECT_AFTER_REJECTIONS must be a whole number of at least 1, "
            f"got {value!r}; keep it below the server's error limit (Postfix: 10)."
        )
    return value


class CardEmails:
    """The cards' emails of one batch, each built once for all its lanes.

    A batch's lanes hold the same job instance (its claim's), each lane its own run of
    items; building a card's email (two templates, the vCard, the prebuilt MIME bytes)
    costs about 3 ms, once per lane before. Kept on the job instance, so it lives as long
    as the batch: the next batch's claim reads the job (and its cards) afresh."""

    _creating = threading.Lock()

    def __init__(self):
        self._emails = {}
        self._lock = threading.Lock()

    @classmethod
    def of(cls, job):
        with cls._creating:
            shared = job.__dict__.get("_card_emails")
            if shared is None:
                shared = job.__dict__["_card_emails"] = cls()
            return shared

    def get(self, job, card, links):
        """The card's email, built and prebuilt by the first lane that asks; the others
        wait for it rather than build their own."""
        with self._lock:
            card_email = self._emails.get(card.pk)
            if card_email is None:
                card_email = self._emails[card.pk] = CardEmail(job, card, links)
                card_email.prebuild()
            return card_email


class EmailBatch(BatchHandler):
    def __init__(self, job, items):
        self.job = job
        self.items = items
        self.connection = get_connection(fail_silently=False)
        self.cards = {}
        self.suppressed = set()
        self.links = {}
        # Follows the SMTP conversation (emails/smtp.py); created when the batch opens.
        self.smtp = None
        # BOUNCE_ADDRESS split (emails/verp.py), or None: the envelope sender is the From.
        self.bounce_address = None
        # The connection was kept open from an earlier batch (emails/connections.py),
        # and has not carried a message in this one yet.
        self._kept = False
        # Over SMTP: the messages made ready ahead (item pk -> emails.smtp.Outgoing), the
        # one being sent and the lane's next (announce()), whose envelope rides behind it.
        self._prepared = {}
        self._upcoming = None

    def open(self):
        self.smtp = SmtpClient(self.connection, reconnect_after_rejections())
        self.bounce_address = verp.bounce_address()
        use_helo_name()
        self._open()
        self.suppressed = suppressed_among(
            self.job.company_id, [i.recipient_email for i in self.items]
        )
        cards = {item.card.pk: item.card for item in self.items if item.card is not None}
        self.links = wallet_links(list(cards.values()))

    def _open(self):
        self._kept = isinstance(self.connection, SmtpBackend) and connections.pool.take(
            self.connection
        )
        if self._kept:
            # Kept open from an earlier batch (emails/connections.py): greeted already.
            self.smtp.reset_errors()
            return
        try:
            self.connection.open()
            smtp = getattr(self.connection, "connection", None)
            if isinstance(smtp, smtplib.SMTP):
                # Greet now (sendmail() would have): a refused greeting is the server's
                # problem, not the first recipient's, and MAIL needs the ESMTP options.
                smtp.ehlo_or_helo_if_needed()
        except smtplib.SMTPAuthenticationError as exc:
            # A refused login (or greeting, below) leaves a socket that nothing else closes.
            self._drop()
            raise ProviderUnavailable(
                f"SMTP login refused ({exc.smtp_code} {_reply_text(exc.smtp_error)}); "
                "check EMAIL_HOST_USER and EMAIL_HOST_PASSWORD"
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            raise ProviderUnavailable(f"cannot connect to the mail server: {exc}") from exc
        self.smtp.reset_errors()
        sock = getattr(smtp, "sock", None)
        if sock is not None:
            # A message spans several TCP segments; with Nagle's algorithm the last,
            # partial one (with the final ".") waits for the server's delayed ACK.
            # Measured: +40% messages/s.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _is_closed(self):
        # Only SMTP-like backends keep a connection; the others open per send.
        return hasattr(self.connection, "connection") and self.connection.connection is None

    def _drop(self):
        if self.smtp is not None:
            # Without QUIT when an envelope went ahead (the server waits for its message).
            self.smtp.close_connection()
        else:
            close_quietly(self.connection)

    def close(self):
        smtp = self.smtp
        if (
            isinstance(self.connection, SmtpBackend)
            and smtp is not None
            and not smtp.waiting_for_message
            and not smtp.errors
        ):
            # Between transactions and in good standing: kept for the next batch.
            connections.pool.give_back(self.connection)
            return
        self._drop()

    def _card_email(self, card):
        card_email = self.cards.get(card.pk)
        if card_email is None:
            links = self.links.get(card.pk)
            card_email = CardEmails.of(self.job).get(self.job, card, links)
            self.cards[card.pk] = card_email
        return card_email

    def announce(self, item):
        """The lane's next item. Over SMTP its message is made now, and its envelope goes
        out behind the current item's final "." (emails/smtp.py): one round trip per
        message instead of two. Not for an item that will not be sent."""
        current = self._prepared.get(self._upcoming)
        self._prepared = {} if current is None else {self._upcoming: current}
        self._upcoming = item.pk
        if not isinstance(self.connection, SmtpBackend) or self._refusal(item) is not None:
            return
        try:
            self._prepared[item.pk] = self._outgoing(item)
        except Exception as exc:
            if outage.is_outage(exc):
                raise
            # The next item's own error, not the current one's: handle() meets it again
            # and gives that item its outcome; nothing goes ahead meanwhile.

    def _refusal(self, item):
        """The Outcome of an item that is not sent (its card deleted, its address
        suppressed), else None."""
        if item.card is None:
            return Outcome.failed(Reason("card_deleted"))
        if item.recipient_email.lower() in self.suppressed:
            return Outcome.failed(Reason("suppressed"))
        return None

    def _outgoing(self, item):
        """The item's message ready for the SMTP conversation (emails.smtp.Outgoing)."""
        message = self._card_email(item.card).prebuilt_for(item, connection=self.connection)
        # With BOUNCE_ADDRESS, bounces come back to an address naming the item.
        sender = self.bounce_address and verp.envelope_sender(item.pk, self.bounce_address)
        return self.smtp.prepare(message, item.recipient_email, sender)

    def handle(self, item):
        refusal = self._refusal(item)
        if refusal is not None:
            return refusal
        if isinstance(self.connection, SmtpBackend):
            message = self._prepared.pop(item.pk, None) or self._outgoing(item)
        elif _serialises_messages(self.connection):
            message = self._card_email(item.card).prebuilt_for(item, connection=self.connection)
        else:
            message = self._card_email(item.card).for_recipient(item, connection=self.connection)
        if self._is_closed():
            self._open()
        try:
            self._send_over_kept(message)
        except DeliveryUnknown as exc:
            self._drop()
            outcome = Outcome.failed(Reason("delivery_unknown", reply=str(exc)))
            if exc.timed_out:
                # The server has the message but stopped answering: it would take the next
                # one and not answer either. The item keeps its outcome; the batch stops
                # and the job pauses, and the next run's batch probes the server.
                raise ProviderUnavailable(
                    silent_server_cause(exc.timeout), outcome=outcome
                ) from exc
            return outcome
        except esp.ERRORS as exc:
            # Before OSError below: anymail's HTTP errors are requests' (OSError) too.
            verdict = esp.classify(exc, getattr(self.connection, "esp_name", None))
            if verdict is None:
                raise
            return self._esp_outcome(item, verdict, exc)
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()), (None, b""))
            return self._refused(item, code, _reply_text(text), at="RCPT")
        except smtplib.SMTPSenderRefused as exc:
            if exc.smtp_code == 421:
                self._drop()
                reply = f"421 {_reply_text(exc.smtp_error)}"
                return Outcome.retry(Reason("smtp_closing", reply=reply))
            raise ProviderUnavailable(
                f"the mail server refused the sender {exc.sender} "
                f"({exc.smtp_code} {_reply_text(exc.smtp_error)}); check DEFAULT_FROM_EMAIL"
            ) from exc
        except smtplib.SMTPResponseException as exc:
            return self._refused(item, exc.smtp_code, _reply_text(exc.smtp_error), at="DATA")
        except (smtplib.SMTPException, OSError) as exc:
            # Raised before the final "." was sent (see emails/smtp.py): nothing was
            # delivered, so sending again is safe.
            self._drop()
            detail = str(exc) or type(exc).__name__
            return Outcome.retry(Reason("connection_lost", reply=detail))
        self.smtp.reset_errors()
        refused = esp.refused_statuses(message)
        if refused:
            # The ESP answered but will not deliver (ANYMAIL["IGNORE_RECIPIENT_STATUS"]
            # lets such a send return instead of raising).
            status = "/".join(sorted(refused))
            by = getattr(self.connection, "esp_name", None) or "the ESP"
            verdict = esp.Verdict(esp.FAILED, f"Rejected by {by}: recipient {status}", True)
            return self._esp_outcome(item, verdict, None)
        return Outcome.done()

    def _esp_outcome(self, item, verdict, exc):
        if verdict.action == esp.PAUSE:
            raise ProviderUnavailable(verdict.reason) from exc
        if verdict.action == esp.RETRY:
            return Outcome.retry(verdict.reason, retry_after=verdict.retry_after)
        if verdict.suppress:
            suppress(
                self.job.company_id,
                item.recipient_email,
                EmailSuppression.Reason.REJECTED,
                verdict.reason,
            )
        return Outcome.failed(verdict.reason)

    def _send_over_kept(self, message):
        """Send; a connection kept from an earlier batch that turns out to be gone
        before the message's "." (the relay forgot it without a word) costs the item
        nothing: the message goes once more, over a new connection."""
        kept, self._kept = self._kept, False
        try:
            self._send(message)
        except smtplib.SMTPServerDisconnected:
            if not kept:
                raise
            self._drop()
            connections.pool.close_all()  # kept as long, likely gone too
            self._open()
            self._send(message)

    def _send(self, message):
        if not isinstance(self.connection, SmtpBackend):
            # Other backends (file, console, an API's) have no conversation to follow;
            # an ESP reports bounces through its webhooks (emails/webhooks.py).
            self.connection.send_messages([message])
            return
        upcoming = self._prepared.get(self._upcoming)
        self.smtp.send(message, then=upcoming if upcoming is not message else None)

    def _refused(self, item, code, text, at):
        reply = f"{code} {text}".strip()
        self.smtp.count_error()  # drops the connection at EMAIL_RECONNECT_AFTER_REJECTIONS
        if code == 421:
            self._drop()
            return Outcome.retry(Reason("smtp_closing", reply=reply))
        if code is not None and 400 <= code < 500:
            return Outcome.retry(Reason("smtp_temporary", {"stage": at}, reply=reply))
        # A permanent refusal: its enhanced status code says whether the address is
        # certainly undeliverable (suppressed) or refused for another reason (policy,
        # routing, a full mailbox: failed, the address kept); emails/status.py.
        verdict = classify(enhanced_code(text))
        if verdict.suppress:
            suppress(
                self.job.company_id, item.recipient_email, EmailSuppression.Reason.BOUNCED, reply
            )
        return Outcome.failed(Reason(verdict.code, {"stage": at}, reply=reply))


class EmailJobKind(JobKind):
    name = "email"
    label = gettext_lazy("Email jobs")
    label_in_sentence = gettext_lazy("email jobs")
    job_noun = gettext_lazy("email job")
    item_noun = gettext_lazy("email")
    item_noun_plural = gettext_lazy("emails")
    done_verb = gettext_lazy("sent")
    provider_wait_label = gettext_lazy("Waiting for the mail server")
    log_name = "ProcessBulkEmailJob"
    command = "process_email_jobs"
    job_model = BulkEmailJob
    item_model = BulkEmailJobItem
    batch_size_setting = "EMAIL_BATCH_SIZE"
    concurrency_setting = "EMAIL_CONCURRENCY"
    connections_setting = "EMAIL_CONNECTIONS"
    max_connections_setting = "EMAIL_MAX_CONNECTIONS"
    company_rate_setting = "EMAIL_COMPANY_RATE"
    # A mail server's patience: temporary refusals are retried for a day.
    retry_schedule_setting = "EMAIL_RETRY_SCHEDULE"
    # At most once: an item interrupted mid-delivery may or may not have been sent.
    interrupted_policy = InterruptedPolicy.FAIL
    interrupted_reason = (
        f"{INTERRUPTED_PREFIX} delivery is unknown and it was not resent. If it did not "
        "arrive, use 'Retry items whose delivery is unknown'."
    )
    failover_reason = DELIVERY_UNKNOWN_PREFIX + (
        "the database failed over (to a standby replicated asynchronously) while this "
        "email may have been sent; not resent. If it did not arrive, use 'Retry items "
        "whose delivery is unknown'."
    )
    # Indexed per job (emails/migrations/0010_item_search_indexes.py).
    search_fields = ("recipient_email", "recipient_name")
    search_label = gettext_lazy("Find a recipient: address or name starts with")
    # Both may have reached the recipient: retried only when a person confirms them.
    unknown_outcome_reasons = (DELIVERY_UNKNOWN_PREFIX, INTERRUPTED_PREFIX)

    def batch_items(self, queryset):
        return queryset.select_related("card__company")

    def min_items_per_lane(self):
        """Sized to the relay's reply time (emails.smtp.reply_time): a lane costs about
        LANE_COST_SECONDS of this process's and the database's work (its queries, its
        thread; its connection is mostly kept warm), so items take lanes of their own
        once that many fit into a few round trips: 10 per lane against a relay on the
        same host, down to 3 against one 7 ms or more away, where one company's batch
        then spreads over every connection the run holds."""
        most, seconds = super().min_items_per_lane(), reply_time.seconds
        if seconds is None or seconds <= 0:
            return most
        return max(FEWEST_ITEMS_PER_LANE, min(most, math.ceil(LANE_COST_SECONDS / seconds)))

    def after_run(self):
        # A worker (--loop) keeps mail connections from run to run, not past their time.
        connections.pool.close_expired()

    def batch_handler(self, job, items):
        return EmailBatch(job, items)

    def batch_rate_limits(self):
        rate = parse_rate(settings.EMAIL_RATE_LIMIT, setting="EMAIL_RATE_LIMIT")
        if rate is None:
            return []
        return [("email:mail-server", rate, f"the mail server's rate limit ({rate})")]

    def retry_exclusions(self, job):
        """Failed items whose address is now on the company's suppression list (a hard
        bounce, an unsubscribe), or on any company's for the whole platform: sending again
        would bounce again or ignore a wish."""
        suppressed = EmailSuppression.objects.filter(
            Q(company_id=job.company_id) | Q(platform_wide=True),
            email=Lower(OuterRef("recipient_email")),
        )
        return gettext_lazy("their addresses are on the suppression list"), {
            str(SKIPPED_LABELS[value]): Exists(suppressed.filter(reason=value))
            for value in EmailSuppression.Reason.values
        }

    def item_columns(self):
        # The bounce's words and status show; its bookkeeping does not.
        hidden = {"bounced_at", "bounce_detail", "bounce_report_id"}
        return [column for column in super().item_columns() if column[1] not in hidden]

    def describe_item(self, item):
        # Item id and domain only: full addresses stay out of the logs.
        return f"item {item.pk} (to …@{item.recipient_email.rpartition('@')[2]})"
