"""The email kind's SMTP client: one transaction per message over the open connection of
Django's SMTP backend, knowing at which step a failure happened.

At most once, inside the SMTP conversation too: each message is sent step by step (MAIL,
RCPT, DATA, the body and its final ".", the reply), so a failure is known to have happened
before the final "." (nothing was delivered: the caller may send again) or after it (the
server may have queued the message: DeliveryUnknown, never resent automatically; one that
timed out means the server stopped answering, and emails/kind.py pauses the job). A
server that offers PIPELINING gets MAIL, RCPT and DATA in one round trip, which halves a
message's round trips to a distant relay; and when the caller says which message comes
next, that message's MAIL, RCPT and DATA travel behind this one's final "." (RFC 2920
section 3.1 lets message content open a group), so each message after the first costs one
round trip. Nothing of the next message is delivered before its own body and "." are sent,
which happens only when the caller sends it: a caller that stops first closes the
connection without QUIT (close_connection()), and the server drops the open transaction.

Mail servers slow down clients that make many errors in one connection (Postfix: after
smtpd_soft_error_limit = 10 errors without a delivery each reply waits
smtpd_error_sleep_time; after 20 it disconnects; RSET does not reset the count). The
client counts the error replies since the connection last delivered a message (a refused
recipient is one, two when pipelined, as the DATA sent behind it fails too) and drops the
connection after EMAIL_RECONNECT_AFTER_REJECTIONS of them, so the next message opens a
fresh one and a list with many bad addresses is never throttled.
"""

import collections
import functools
import re
import smtplib
import socket
import time
from dataclasses import dataclass
from email.utils import parseaddr

from django.conf import settings
from django.core.mail import utils as mail_utils
from django.core.mail.message import sanitize_address
from django.utils.encoding import punycode

#: Start of the reason of an item whose delivery is unknown (SMTP here, an ESP's API in
#: emails/esp.py): the server may have the message, so only a person resends it (the
#: email kind's unknown_outcome_reasons). Stable: "Retry failed items" recognises the
#: items by it.
DELIVERY_UNKNOWN_PREFIX = "Delivery unknown: "

# Lines of the body that start with "." get a second one (RFC 5321 section 4.5.2).
_LEADING_DOT = re.compile(rb"(?m)^\.")


class ReplyTime:
    """How long the relay takes to answer a message's final ".": a round trip plus the
    relay's own work, as the least of this process's last SAMPLES replies (every
    lane's). The least, not the mean: a reply read late because this process was busy
    (its threads share one interpreter) says nothing of the relay, and counting it
    would make a busy process open more lanes and get busier still. None until a
    message was sent."""

    SAMPLES = 64

    def __init__(self):
        self._samples = collections.deque(maxlen=self.SAMPLES)

    def note(self, seconds):
        self._samples.append(seconds)  # deque.append is atomic

    def forget(self):
        self._samples.clear()

    @property
    def seconds(self):
        samples = list(self._samples)
        return min(samples) if samples else None


#: The relay's reply time, as this process has seen it.
reply_time = ReplyTime()


class DeliveryUnknown(Exception):
    """The final "." was sent but no reply came: the server may have queued the message.

    `timed_out` says the server stayed silent (no reply within `timeout` seconds, None
    when no EMAIL_TIMEOUT is set) rather than dropping the connection: a server that
    takes a message and then stops answering will not answer the next one either.
    """

    def __init__(self, detail, *, timed_out=False, timeout=None):
        super().__init__(detail)
        self.timed_out = timed_out
        self.timeout = timeout


def helo_name():
    """The name the client greets with: EMAIL_HELO_NAME, else this host's fully qualified
    name, else DEFAULT_FROM_EMAIL's domain. Never "localhost" or a bare host name, which
    receivers count against a sender (and some refuse)."""
    return _helo_name(settings.EMAIL_HELO_NAME, settings.DEFAULT_FROM_EMAIL)


@functools.lru_cache(maxsize=4)
def _helo_name(configured, from_email):
    if configured:
        return punycode(configured)
    for name in (socket.getfqdn(), socket.gethostname()):
        if "." in name and not name.startswith("localhost"):
            return punycode(name)
    return punycode(parseaddr(from_email)[1].rpartition("@")[2] or "localhost.localdomain")


def use_helo_name():
    """Make Django's SMTP backend greet with helo_name(): it passes the SMTP connection
    local_hostname=django.core.mail.utils.DNS_NAME, a cached socket.getfqdn(), which is
    "localhost" on many hosts (set before each batch opens its connection)."""
    mail_utils.DNS_NAME._fqdn = helo_name()


@dataclass(frozen=True, eq=False)
class Outgoing:
    """A message ready for the wire (SmtpClient.prepare()): its envelope and its bytes."""

    recipient: str
    envelope_from: str
    data: bytes


@dataclass(frozen=True, eq=False)
class _Ahead:
    """An envelope sent ahead behind the previous message's final ".": on `smtp`, the
    server has it (its three replies not read yet) and, once it said 354, waits for the
    message of `outgoing`."""

    smtp: smtplib.SMTP
    outgoing: Outgoing


def close_quietly(backend):
    """Close a mail backend's connection, ignoring errors; an SMTP backend forgets it, so
    that the next message finds it closed and opens a new one."""
    try:
        backend.close()
    except (smtplib.SMTPException, OSError):
        pass
    if hasattr(backend, "connection"):
        backend.connection = None


#: An address that smtplib.quoteaddr() would return as it is, in angle brackets: no
#: display name, quoting, comment or route (RFC 5322 specials and spaces).
_PLAIN_ADDRESS = re.compile(r"[^\s<>()\[\]\\,;:\"@]+@[^\s<>()\[\]\\,;:\"@]+")


def angle_address(address):
    """smtplib.quoteaddr(address): `<address>`. A recipient is a plain address
    (sanitize_address() made it), which needs no parsing; quoteaddr()'s RFC 5322 parser
    cost the two of a message a tenth of a millisecond. Anything else (a sender with its
    display name, the same for every message of a batch) goes to it, remembered."""
    if _PLAIN_ADDRESS.fullmatch(address):
        return f"<{address}>"
    return _quoted(address)


_quoted = functools.lru_cache(maxsize=64)(smtplib.quoteaddr)


class SmtpClient:
    """Sends messages over `backend` (Django's SMTP EmailBackend, opened by the caller), one
    SMTP transaction each, and counts the server's error replies (see the module docstring).

    smtplib's exceptions say what the server refused (SMTPSenderRefused,
    SMTPRecipientsRefused, SMTPDataError); any of them, or an OSError, means nothing was
    delivered. After a refusal the transaction is reset (RSET), or the connection dropped
    when the server is closing it (421) or the reset fails.
    """

    def __init__(self, backend, reconnect_after):
        self.backend = backend
        #: Error replies without a delivery after which the connection is dropped.
        self.reconnect_after = reconnect_after
        # Replies the server counted as errors since this connection last delivered a
        # message (or was opened): a rejection, and with PIPELINING also the DATA after it.
        self.errors = 0
        self._envelope_from = None
        #: The envelope sent ahead behind the last message's "." (_Ahead), if any.
        self._ahead = None

    def reset_errors(self):
        """A new connection, or a delivered message: the server's count starts again."""
        self.errors = 0

    def count_error(self):
        """One more error reply (a refusal the caller handles); at the limit the connection
        is dropped, before the server's error limit slows every reply down (RSET does not
        reset its count; a new connection does)."""
        self.errors += 1
        if self.errors >= self.reconnect_after:
            self.close_connection()

    def prepare(self, message, recipient, envelope_from=None):
        """The Outgoing for one EmailMessage to `recipient`. `envelope_from`: the MAIL FROM
        address (an item's VERP address, emails/verp.py), DEFAULT_FROM_EMAIL's address by
        default."""
        if envelope_from is None:
            if self._envelope_from is None:
                # Parsed once per batch, not per email as Django's backend does (~0.5 ms);
                # the recipient was validated when the job was created.
                self._envelope_from = sanitize_address(
                    settings.DEFAULT_FROM_EMAIL, settings.DEFAULT_CHARSET
                )
            envelope_from = self._envelope_from
        if not recipient.isascii():
            recipient = sanitize_address(recipient, settings.DEFAULT_CHARSET)
        data = message.message().as_bytes(linesep="\r\n")
        return Outgoing(recipient, envelope_from, data)

    def send(self, outgoing, then=None):
        """Send an Outgoing in one transaction (see the class docstring); raises
        DeliveryUnknown when the server may have it but did not say so. `then`: the
        Outgoing the caller sends next over this connection, whose envelope goes out
        behind this message's final "." when the server offers PIPELINING; the caller
        must send it next, or close the connection with close_connection()."""
        self._transaction(self.backend.connection, outgoing, then)

    @property
    def waiting_for_message(self):
        """True while the open connection holds an envelope sent ahead: the server may be
        waiting for that message's data, so QUIT or RSET would be read as its text."""
        ahead = self._ahead
        return ahead is not None and ahead.smtp is getattr(self.backend, "connection", None)

    def close_connection(self):
        """Drop the connection. One holding an envelope sent ahead is closed without QUIT:
        the server, in the middle of that transaction, drops it and delivers nothing."""
        if self.waiting_for_message:
            try:
                self._ahead.smtp.close()
            except OSError:
                pass
            self.backend.connection = None
        self._ahead = None
        close_quietly(self.backend)

    def _transaction(self, smtp, outgoing, then):
        """One SMTP transaction, as smtplib's sendmail() but knowing where it failed.

        Anything raised before the final "." has been sent means nothing was delivered.
        Once it has been sent, a lost connection or a timeout while waiting for the reply
        raises DeliveryUnknown: the server may already have queued the message.
        """
        ahead, self._ahead = self._ahead, None
        pipelining = smtp.does_esmtp and smtp.has_extn("pipelining")
        if ahead is not None and ahead.smtp is smtp:
            if ahead.outgoing is not outgoing:
                # Another message's envelope waits on this connection (a caller that did
                # not send what it announced): start again on a new one.
                self._ahead = ahead
                self.close_connection()
                raise smtplib.SMTPServerDisconnected(
                    "another message's envelope was pending; connection closed"
                )
            self._envelope_replies(smtp, outgoing)
        elif pipelining:
            smtp.send(self._envelope_lines(smtp, outgoing))
            self._envelope_replies(smtp, outgoing)
        else:
            self._envelope(smtp, outgoing)
        body = _LEADING_DOT.sub(b"..", outgoing.data)
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        next_envelope = self._envelope_lines(smtp, then).encode() if then and pipelining else b""
        smtp.send(body + b".\r\n")
        sent_at = time.monotonic()
        if next_envelope:
            # A write of its own, right behind (no round trip between them): should it
            # fail, the "." is known to be out, and the reply below says what became of
            # this message (none: DeliveryUnknown), never "nothing was delivered".
            try:
                smtp.send(next_envelope)
            except smtplib.SMTPServerDisconnected:
                next_envelope = b""
        try:
            code, reply = smtp.getreply()
        except OSError as exc:
            # smtplib turns a timeout into SMTPServerDisconnected; its cause tells which.
            # An envelope sent ahead is lost with the connection, which the caller drops.
            if isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError):
                timeout = self.backend.timeout
                detail = (
                    f"no reply within EMAIL_TIMEOUT = {timeout} s"
                    if timeout
                    else "no reply before the socket timed out"
                )
                raise DeliveryUnknown(detail, timed_out=True, timeout=timeout) from exc
            raise DeliveryUnknown(str(exc) or type(exc).__name__) from exc
        reply_time.note(time.monotonic() - sent_at)
        if next_envelope:
            self._ahead = _Ahead(smtp, then)
        if code != 250:
            if next_envelope:
                # The transaction is over either way (RFC 5321 section 4.1.1.4); a RSET
                # now would be read as the next message's text.
                if code == 421:
                    self.close_connection()
            else:
                self._end_transaction(smtp, code)
            raise smtplib.SMTPDataError(code, reply)

    @staticmethod
    def _mail_options(smtp, outgoing):
        """MAIL's parameters: the message's size, when the server takes it (RFC 1870)."""
        return [f"SIZE={len(outgoing.data)}"] if smtp.does_esmtp and smtp.has_extn("size") else []

    def _envelope_lines(self, smtp, outgoing):
        """MAIL, RCPT and DATA of one message, to be sent together."""
        options = "".join(f" {option}" for option in self._mail_options(smtp, outgoing))
        return (
            f"MAIL FROM:{angle_address(outgoing.envelope_from)}{options}\r\n"
            f"RCPT TO:{angle_address(outgoing.recipient)}\r\n"
            "DATA\r\n"
        )

    def _envelope(self, smtp, outgoing):
        """MAIL, RCPT and DATA one by one, a round trip each; returns on 354 (go ahead)."""
        envelope_from, recipient = outgoing.envelope_from, outgoing.recipient
        code, reply = smtp.mail(envelope_from, self._mail_options(smtp, outgoing))
        if code != 250:
            self._end_transaction(smtp, code)
            raise smtplib.SMTPSenderRefused(code, reply, envelope_from)
        code, reply = smtp.rcpt(recipient)
        if code not in (250, 251):
            self._end_transaction(smtp, code)
            raise smtplib.SMTPRecipientsRefused({recipient: (code, reply)})
        smtp.putcmd("data")
        code, reply = smtp.getreply()
        if code != 354:
            self._end_transaction(smtp, code)
            raise smtplib.SMTPDataError(code, reply)

    def _envelope_replies(self, smtp, outgoing):
        """The three replies to MAIL, RCPT and DATA sent together (RFC 2920 PIPELINING,
        which Postfix, Exim and the big relays offer), read after one round trip: a
        message costs two round trips instead of four, one when its envelope went ahead.
        Returns on 354; raises as _envelope() does.

        Nothing of the message has been sent before its 354, so every failure here is
        before the final "." and sending again stays safe.
        """
        envelope_from, recipient = outgoing.envelope_from, outgoing.recipient
        replies = []
        try:
            while len(replies) < 3:
                replies.append(smtp.getreply())
        except (smtplib.SMTPException, OSError):
            if all(code in (250, 251) for code, _ in replies):
                raise
            # A refusal came before the connection went (a 421 closes it): report the
            # refusal; the next item opens a new connection.
            self.close_connection()
        (mail_code, mail_reply), *rest = replies
        rcpt_code, rcpt_reply = rest[0] if rest else (None, b"")
        data_code, data_reply = rest[1] if len(rest) > 1 else (None, b"")
        envelope_refused = mail_code != 250 or rcpt_code not in (250, 251)
        if data_code == 354:
            if not envelope_refused:
                return
            # A server that said 354 with no valid recipient still waits for a message;
            # an empty one ends the transaction and reaches nobody (RFC 2920 section 3.1).
            smtp.send(b".\r\n")
            data_code, _ = smtp.getreply()
        if envelope_refused and data_code is not None and data_code >= 400:
            # The DATA after a refusal fails too, and the server counts it as an error.
            self.errors += 1
        if mail_code != 250:
            self._end_transaction(smtp, mail_code)
            raise smtplib.SMTPSenderRefused(mail_code, mail_reply, envelope_from)
        if rcpt_code not in (250, 251):
            self._end_transaction(smtp, rcpt_code)
            raise smtplib.SMTPRecipientsRefused({recipient: (rcpt_code, rcpt_reply)})
        self._end_transaction(smtp, data_code)
        raise smtplib.SMTPDataError(data_code, data_reply)

    def _end_transaction(self, smtp, code):
        """After a refusal: 421 means the server is closing; anything else needs a RSET."""
        if code == 421:
            self.close_connection()
            return
        try:
            smtp.rset()
        except OSError:
            # The next item finds the connection closed and opens a new one.
            self.close_connection()
