"""A real SMTP server on loopback (aiosmtpd) that records messages and can misbehave on cue.

Recipients' local parts (before any "+tag") script the server's replies:
  tempfail@   -> 450 at RCPT          reject@  -> 550 at RCPT (hard bounce)
  closing@    -> 421 at RCPT, then the server closes the connection
  badcontent@ -> 554 at end of DATA   busy-at-data@ -> 451 at end of DATA
  unknown@    -> 550 at RCPT quoting the full address, as Postfix does
  blocked@    -> 550 5.7.1 at RCPT (a policy or reputation block, not a dead address)
  disabled@   -> 550 5.2.1 at RCPT     relaying@ -> 554 5.4.6 at RCPT (a routing loop)
  accept-then-drop@ -> reads the whole message, then closes without replying
  slow-reply@ -> reads the whole message, queues it, answers 250 after `slow_reply` seconds
  silent-at-rcpt@ -> the first time the address is seen, answers its RCPT only after
                 `slow_reply` seconds (nothing delivered); later attempts succeed
  drop-at-rcpt@, drop-before-354@ -> the first time the address is seen, the connection
                 is dropped at that step (nothing delivered); later attempts succeed

The server offers PIPELINING (RFC 2920) as Postfix does, unless `pipelining` is False;
`pipelined_envelopes` counts the MAIL commands whose RCPT and DATA had already arrived
with them, and `envelopes_behind_data` those that had arrived with the previous message's
final "." (the client pipelined the next envelope behind it), waiting up to
`wait_for_next_envelope` seconds (0 by default) before answering the "." for it to arrive.
With `data_without_recipients` it answers DATA with 354 even when every RCPT
was refused (some servers do) and then refuses the empty message.

`rcpt_rule`, when set, is asked first for every RCPT: a function of the address that
returns the reply to refuse it with, or None (a greylist, a mailbox full for a while).

While `silent` is set the server is a relay that stops answering after each message: it
reads the whole message and queues it (into `messages`, unconfirmed), then says nothing
until `silent` is cleared.

`messages` holds every message the server received in full, `confirmed` saying whether
the client was told so: what a recipient would find in their mailbox.
"""

import asyncio
import socket
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, syntax


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
    confirmed: bool = True
    at: float = field(default_factory=time.monotonic)
    #: The name the client greeted with (EHLO or HELO).
    helo: str = ""

    @property
    def message(self):
        return message_from_bytes(self.data, policy=policy.default)


def script(address):
    """The misbehaviour an address asks for: its local part without any "+tag"."""
    return address.split("@")[0].split("+")[0].lower()


class SinkHandler:
    def __init__(self, sink):
        self.sink = sink

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        with self.sink.lock:
            self.sink.greetings += 1
        if self.sink.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if address in self.sink.refused_senders:
            return "550 5.7.1 Sender not allowed"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = script(address)
        if local == "drop-at-rcpt" and self.sink.first_time(address, "rcpt"):
            server.transport.abort()
            return "250 never seen"
        if local == "silent-at-rcpt" and self.sink.first_time(address, "rcpt"):
            await asyncio.sleep(self.sink.slow_reply)
        rule = self.sink.rcpt_rule
        reply = (rule(address) if rule else None) or self.rcpt_reply(server, local, address)
        with self.sink.lock:
            self.sink.rcpt_log.append((session.peer, address, reply is None))
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    @staticmethod
    def rcpt_reply(server, local, address):
        """The scripted refusal for this local part, or None to accept the recipient."""
        if local == "tempfail":
            return "450 4.2.0 Mailbox busy, try later"
        if local == "reject":
            return "550 5.1.1 No such user"
        if local == "unknown":
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if local == "blocked":
            return "550 5.7.1 Service unavailable; client host blocked using a blocklist"
        if local == "disabled":
            return "550 5.2.1 The email account that you tried to reach is disabled"
        if local == "relaying":
            return "554 5.4.6 Hop count exceeded - possible mail loop"
        if local == "closing":
            asyncio.get_running_loop().call_later(0.05, server.transport.close)
            return "421 4.3.2 Service shutting down"
        return None

    async def handle_DATA(self, server, session, envelope):
        # What arrived behind this message's final ".": the next envelope, if pipelined
        # (a write of its own: it may trail the "." by a moment).
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self.sink.wait_for_next_envelope
        while bytes(server._reader._buffer)[:10].upper() != b"MAIL FROM:":
            if loop.time() >= give_up_at:
                break
            await asyncio.sleep(0.005)
        else:
            with self.sink.lock:
                self.sink.envelopes_behind_data += 1
        local = script(envelope.rcpt_tos[0])
        if local == "badcontent":
            return "554 5.6.0 Message content rejected"
        if local == "busy-at-data":
            return "451 4.3.0 Queue full, try again later"
        if self.sink.delay:
            with self.sink.lock:
                self.sink.in_flight += 1
                self.sink.max_in_flight = max(self.sink.max_in_flight, self.sink.in_flight)
            await asyncio.sleep(self.sink.delay)
            with self.sink.lock:
                self.sink.in_flight -= 1
        silent = self.sink.silent
        received = Received(
            session.peer,
            envelope.mail_from,
            list(envelope.rcpt_tos),
            envelope.content,
            confirmed=local != "accept-then-drop" and not silent,
            helo=session.host_name or "",
        )
        with self.sink.lock:
            self.sink.messages.append(received)
        if local == "accept-then-drop":
            server.transport.abort()
            return "250 never seen"
        if silent:
            while self.sink.silent:
                await asyncio.sleep(0.05)
            return "250 Message accepted (too late: the client gave up)"
        if local == "slow-reply":
            await asyncio.sleep(self.sink.slow_reply)
        if self.sink.on_message:
            # Runs in the server's thread, like another process acting meanwhile.
            await asyncio.get_running_loop().run_in_executor(
                None, self.sink.call_on_message, received
            )
        return "250 Message accepted"


class ScriptedSMTP(SMTP):
    """aiosmtpd's server, plus a fault before the 354 reply (the handler has no hook there)."""

    @syntax("MAIL FROM:<address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg):
        # The commands that had arrived behind MAIL before the server read it.
        waiting = bytes(self._reader._buffer).upper()
        if b"\r\nRCPT TO:" in b"\r\n" + waiting and waiting.endswith(b"DATA\r\n"):
            with self.event_handler.sink.lock:
                self.event_handler.sink.pipelined_envelopes += 1
        await super().smtp_MAIL(arg)

    async def smtp_QUIT(self, arg):
        with self.event_handler.sink.lock:
            self.event_handler.sink.quits += 1
        await super().smtp_QUIT(arg)

    @syntax("DATA")
    async def smtp_DATA(self, arg):
        recipients = self.envelope.rcpt_tos if self.envelope else []
        if recipients and script(recipients[0]) == "drop-before-354":
            if self.event_handler.sink.first_time(recipients[0], "data"):
                self.transport.abort()
                return
        if not recipients and self.event_handler.sink.data_without_recipients:
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            while await self._reader.readuntil(b"\r\n") != b".\r\n":
                pass
            await self.push("554 5.5.1 No valid recipients")
            return
        await super().smtp_DATA(arg)


class ScriptedController(Controller):
    def factory(self):
        server = ScriptedSMTP(self.handler, **self.SMTP_kwargs)
        self.handler.sink.servers.append(server)
        return server


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
        self.slow_reply = 1.0
        # A relay that queues each message and then stops answering (see the docstring).
        self.silent = False
        self.pipelining = True
        self.pipelined_envelopes = 0
        self.envelopes_behind_data = 0
        self.wait_for_next_envelope = 0.0
        # Every connection's server side, for hang_up(); and how many clients greeted
        # (EHLO): the connections opened, the controller's own readiness probe aside.
        self.servers = []
        self.greetings = 0
        self.quits = 0
        self.data_without_recipients = False
        self.rcpt_rule = None
        # (connection, address, accepted) for every RCPT the server answered.
        self.rcpt_log = []
        self._faults_done = set()
        self.port = free_port()
        kwargs = {}
        if password is not None:
            kwargs = dict(
                authenticator=self._authenticate(password),
                auth_require_tls=False,
                auth_required=True,
            )
        self.controller = ScriptedController(
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

    def first_time(self, address, step):
        """True once per address and step: a scripted fault strikes only the first attempt."""
        with self.lock:
            if (address, step) in self._faults_done:
                return False
            self._faults_done.add((address, step))
            return True

    def start(self):
        self.controller.start()
        return self

    def hang_up(self):
        """Close every open connection from the server's side, as a relay does with idle
        ones (here without a 421 first)."""

        def close_all():
            for server in self.servers:
                if server.transport is not None:
                    server.transport.close()

        self.controller.loop.call_soon_threadsafe(close_all)
        end = time.monotonic() + 5
        while any(server.transport is not None for server in self.servers):
            if time.monotonic() > end:
                raise TimeoutError("the sink's connections did not close")
            time.sleep(0.01)

    def stop(self):
        self.silent = False
        self.controller.stop()

    @property
    def sessions(self):
        """Number of distinct SMTP connections that delivered at least one message."""
        return len({m.peer for m in self.messages})

    def recipients(self):
        return [r for m in self.messages for r in m.rcpt_tos]

    def arrivals(self, address):
        """How many times a message to this address reached the server in full."""
        return self.recipients().count(address)

    def wait_for(self, count, timeout=10.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end and len(self.messages) < count:
            time.sleep(0.02)
        return len(self.messages)
