"""A real SMTP server on loopback (aiosmtpd) that records messages and can misbehave on cue.

Recipients' local parts script the server's replies:
  tempfail@   -> 450 at RCPT          reject@  -> 550 at RCPT (hard bounce)
  closing@    -> 421 at RCPT, then the server closes the connection
  badcontent@ -> 554 at end of DATA   drop@    -> connection dropped during DATA
  unknown@    -> 550 at RCPT quoting the full address, as Postfix does
"""

import asyncio
import socket
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Received:
    peer: tuple
    mail_from: str
    rcpt_tos: list
    data: bytes
    at: float = field(default_factory=time.monotonic)

    @property
    def message(self):
        return message_from_bytes(self.data, policy=policy.default)


class SinkHandler:
    def __init__(self, sink):
        self.sink = sink

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if address in self.sink.refused_senders:
            return "550 5.7.1 Sender not allowed"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0].lower()
        if local == "tempfail":
            return "450 4.2.0 Mailbox busy, try later"
        if local == "reject":
            return "550 5.1.1 No such user"
        if local == "unknown":
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if local == "closing":
            asyncio.get_running_loop().call_later(0.05, server.transport.close)
            return "421 4.3.2 Service shutting down"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        local = envelope.rcpt_tos[0].split("@")[0].lower()
        if local == "badcontent":
            return "554 5.6.0 Message content rejected"
        if local == "drop":
            server.transport.abort()
            return "250 never seen"
        if self.sink.delay:
            with self.sink.lock:
                self.sink.in_flight += 1
                self.sink.max_in_flight = max(self.sink.max_in_flight, self.sink.in_flight)
            await asyncio.sleep(self.sink.delay)
            with self.sink.lock:
                self.sink.in_flight -= 1
        received = Received(
            session.peer, envelope.mail_from, list(envelope.rcpt_tos), envelope.content
        )
        with self.sink.lock:
            self.sink.messages.append(received)
        if self.sink.on_message:
            # Runs in the server's thread, like another process acting meanwhile.
            await asyncio.get_running_loop().run_in_executor(
                None, self.sink.call_on_message, received
            )
        return "250 Message accepted"


class SmtpSink:
    def __init__(self, *, password=None):
        self.messages = []
        self.lock = threading.Lock()
        self.refused_senders = set()
        self.delay = 0.0
        # With a delay: messages being accepted right now, and the most at once (how many
        # conversations a client held at the same time).
        self.in_flight = 0
        self.max_in_flight = 0
        self.on_message = None
        self.port = free_port()
        kwargs = {}
        if password is not None:
            kwargs = dict(
                authenticator=self._authenticate(password),
                auth_require_tls=False,
                auth_required=True,
            )
        self.controller = Controller(
            SinkHandler(self), hostname="127.0.0.1", port=self.port, ready_timeout=10, **kwargs
        )

    @staticmethod
    def _authenticate(password):
        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = getattr(auth_data, "password", b"") == password.encode()
            return AuthResult(success=ok, handled=False)

        return authenticator

    def call_on_message(self, received):
        from django.db import connections

        try:
            self.on_message(received)
        finally:
            # The callback ran in a worker thread with its own database connection.
            connections.close_all()

    def start(self):
        self.controller.start()
        return self

    def stop(self):
        self.controller.stop()

    @property
    def sessions(self):
        """Number of distinct SMTP connections that delivered at least one message."""
        return len({m.peer for m in self.messages})

    def recipients(self):
        return [r for m in self.messages for r in m.rcpt_tos]

    def wait_for(self, count, timeout=10.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end and len(self.messages) < count:
            time.sleep(0.02)
        return len(self.messages)
