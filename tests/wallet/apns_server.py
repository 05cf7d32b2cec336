"""A loopback stand-in for APNs: a real HTTP/2 server over TLS (ALPN h2) built on `h2`.

The production ApnsClient runs unchanged against it: https://127.0.0.1:<port>, with the
test CA trusted through APNS_CA_FILE. It records every request (headers, body, which
connection carried it) and answers 200 unless a test scripted other replies for a device
token. With `delay` it answers each request that many seconds after it arrived, as a
distant server would, while reading further streams meanwhile, so a client that
multiplexes has several streams open at once (`max_open_streams` tells the most).

It misbehaves on cue, per device token, as real networks do (see `reply()` and `hold()`):
DROP reads the whole push (HEADERS and DATA) and then resets the TCP connection without
answering, failing every stream still open on it; a held push is answered only once the
test releases it (a server slower than any timeout, or one that never answers).
`received` lists every push that arrived in full, answered or not; `requests` the
answered ones.
Used by tests/wallet/ and bench/bench_wallet.py; not a conftest on purpose.
"""

import heapq
import ipaddress
import json
import select
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from wallet.apple.devcerts import cert_pem, issue, key_pem

#: A scripted reply: read the push in full, then reset the connection without answering.
DROP = "drop"
# How often a connection with held pushes looks whether the test released one.
HOLD_POLL_SECONDS = 0.05


def make_server_certificate(chain, directory):
    """A TLS certificate for 127.0.0.1 issued by the chain's root; returns (cert, key) paths."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = issue(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]),
        key.public_key(),
        chain.root_cert.subject,
        chain.root_key,
        ca=False,
        extensions=[
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            )
        ],
    )
    cert_path, key_path = (
        Path(directory) / "apns-server.pem",
        Path(directory) / "apns-server-key.pem",
    )
    cert_path.write_bytes(cert_pem(cert))
    key_path.write_bytes(key_pem(key))
    return cert_path, key_path


@dataclass
class Request:
    path: str
    headers: dict
    body: bytes
    connection: int

    @property
    def token(self):
        return self.path.rsplit("/", 1)[-1]


@dataclass
class FakeApns:
    cert_path: str
    key_path: str
    # Pushes answered, in order.
    requests: list = field(default_factory=list)
    # Pushes that arrived in full (HEADERS and DATA), answered or not, in order.
    received: list = field(default_factory=list)
    connections: int = 0
    # device token -> list of replies, used up in order, then 200: (status, reason), DROP,
    # or a threading.Event (answer 200 once it is set; see hold()).
    scripted: dict = field(default_factory=dict)
    # Seconds between a request's arrival and its answer.
    delay: float = 0.0
    # The most requests received but not yet answered at one moment, over all connections.
    max_open_streams: int = 0
    # With a CA file: certificate auth as APNs does it, a client certificate that CA
    # issued is required; any other is refused with a TLS alert.
    client_ca: str | None = None

    def __post_init__(self):
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(self.cert_path, self.key_path)
        if self.client_ca:
            self._context.verify_mode = ssl.CERT_REQUIRED
            self._context.load_verify_locations(self.client_ca)
        self._context.set_alpn_protocols(["h2"])
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets = []
        self._open_streams = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self):
        return f"https://127.0.0.1:{self.port}"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        # shutdown() wakes the blocked accept()/recv() on Linux; close() alone does not.
        for sock in [self._listener, *self._sockets]:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        self._thread.join(timeout=5)

    def reply(self, token, *replies):
        """Script replies for a device token's next pushes: (status, reason), or DROP."""
        with self._lock:
            self.scripted.setdefault(token, []).extend(replies)

    def hold(self, token):
        """Hold the answer to the token's next push until the returned event is set (then
        200); a client that gives up first finds its stream, or connection, gone."""
        release = threading.Event()
        with self._lock:
            self.scripted.setdefault(token, []).append(release)
        return release

    def received_tokens(self):
        with self._lock:
            return [request.token for request in self.received]

    def answered_tokens(self):
        with self._lock:
            return [request.token for request in self.requests]

    def _accept(self):
        while True:
            try:
                raw, _addr = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw):
        try:
            sock = self._context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()
            return
        with self._lock:
            self.connections += 1
            number = self.connections
            self._sockets.append(sock)
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        conn.initiate_connection()
        streams = {}
        due = []  # (time to answer, stream id, request, reply), earliest first
        held = []  # (release event, stream id, request)
        try:
            sock.sendall(conn.data_to_send())
            while True:
                wait = max(0.0, due[0][0] - time.monotonic()) if due else None
                if held:
                    wait = min(wait, HOLD_POLL_SECONDS) if wait is not None else HOLD_POLL_SECONDS
                # TLS may hold decrypted bytes select() cannot see.
                if sock.pending() or select.select([sock], [], [], wait)[0]:
                    data = sock.recv(65535)
                    if not data:
                        return
                    for event in conn.receive_data(data):
                        if isinstance(event, h2.events.RequestReceived):
                            streams[event.stream_id] = [dict(event.headers), b""]
                            self._count_open(+1)
                        elif isinstance(event, h2.events.DataReceived):
                            streams[event.stream_id][1] += event.data
                            conn.acknowledge_received_data(
                                event.flow_controlled_length, event.stream_id
                            )
                        elif isinstance(event, h2.events.StreamEnded):
                            headers, body = streams.pop(event.stream_id)
                            request = Request(headers[":path"], headers, body, number)
                            reply = self._arrived(request)
                            if reply == DROP:
                                self._count_open(-1)
                                # SO_LINGER 0: close() sends a RST, as a crashing peer or
                                # a middlebox dropping the flow does.
                                sock.setsockopt(
                                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                                )
                                return
                            if isinstance(reply, threading.Event):
                                held.append((reply, event.stream_id, request))
                            else:
                                answer_at = time.monotonic() + self.delay
                                heapq.heappush(due, (answer_at, event.stream_id, request, reply))
                        elif isinstance(event, h2.events.ConnectionTerminated):
                            sock.sendall(conn.data_to_send())
                            return
                while due and due[0][0] <= time.monotonic():
                    _at, stream_id, request, reply = heapq.heappop(due)
                    self._respond(conn, stream_id, request, reply)
                    self._count_open(-1)
                for entry in [entry for entry in held if entry[0].is_set()]:
                    held.remove(entry)
                    self._respond(conn, entry[1], entry[2], (200, ""))
                    self._count_open(-1)
                sock.sendall(conn.data_to_send())
        except (OSError, ssl.SSLError, h2.exceptions.ProtocolError):
            return
        finally:
            # Streams never answered on this connection are no longer open.
            self._count_open(-(len(streams) + len(due) + len(held)))
            sock.close()

    def _arrived(self, request):
        """Record a push that arrived in full; returns the reply scripted for it."""
        with self._lock:
            self.received.append(request)
            replies = self.scripted.get(request.token)
            return replies.pop(0) if replies else (200, "")

    def _count_open(self, change):
        with self._lock:
            self._open_streams += change
            self.max_open_streams = max(self.max_open_streams, self._open_streams)

    def _respond(self, conn, stream_id, request, reply):
        status, reason = reply
        payload = json.dumps({"reason": reason}).encode() if reason else b""
        response_headers = [(":status", str(status)), ("apns-id", f"id-{stream_id}")]
        if payload:
            response_headers += [
                ("content-type", "application/json"),
                ("content-length", str(len(payload))),
            ]
        try:
            conn.send_headers(stream_id, response_headers, end_stream=not payload)
        except h2.exceptions.StreamClosedError:
            return  # the client reset the stream (it gave up waiting)
        if payload:
            conn.send_data(stream_id, payload, end_stream=True)
        with self._lock:
            self.requests.append(request)
