"""A loopback stand-in for APNs: a real HTTP/2 server over TLS (ALPN h2) built on `h2`.

The production ApnsClient runs unchanged against it: https://127.0.0.1:<port>, with the
test CA trusted through APNS_CA_FILE. It records every request (headers, body, which
connection carried it) and answers 200 unless a test scripted other replies for a device
token. With `delay` it answers each request that many seconds after it arrived, as a
distant server would, while reading further streams meanwhile, so a client that
multiplexes has several streams open at once (`max_open_streams` tells the most).
Used by tests/wallet/ and bench/bench_wallet.py; not a conftest on purpose.
"""

import heapq
import ipaddress
import json
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import h2.config
import h2.connection
import h2.events
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from wallet.apple.devcerts import cert_pem, issue, key_pem


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
    requests: list = field(default_factory=list)
    connections: int = 0
    # device token -> list of (status, reason) replies, used up in order; then 200.
    scripted: dict = field(default_factory=dict)
    # Seconds between a request's arrival and its answer.
    delay: float = 0.0
    # The most requests received but not yet answered at one moment, over all connections.
    max_open_streams: int = 0

    def __post_init__(self):
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(self.cert_path, self.key_path)
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
        """Script replies (status, reason) for a device token's next pushes."""
        self.scripted.setdefault(token, []).extend(replies)

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
        due = []  # (time to answer, stream id, headers, body), earliest first
        try:
            sock.sendall(conn.data_to_send())
            while True:
                wait = max(0.0, due[0][0] - time.monotonic()) if due else None
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
                            answer_at = time.monotonic() + self.delay
                            heapq.heappush(due, (answer_at, event.stream_id, headers, body))
                        elif isinstance(event, h2.events.ConnectionTerminated):
                            sock.sendall(conn.data_to_send())
                            return
                while due and due[0][0] <= time.monotonic():
                    _at, stream_id, headers, body = heapq.heappop(due)
                    self._respond(conn, stream_id, headers, body, number)
                    self._count_open(-1)
                sock.sendall(conn.data_to_send())
        except (OSError, ssl.SSLError):
            return
        finally:
            sock.close()

    def _count_open(self, change):
        with self._lock:
            self._open_streams += change
            self.max_open_streams = max(self.max_open_streams, self._open_streams)

    def _respond(self, conn, stream_id, headers, body, number):
        request = Request(headers[":path"], headers, body, number)
        with self._lock:
            self.requests.append(request)
            replies = self.scripted.get(request.token)
            status, reason = replies.pop(0) if replies else (200, "")
        payload = json.dumps({"reason": reason}).encode() if reason else b""
        response_headers = [(":status", str(status)), ("apns-id", f"id-{stream_id}")]
        if payload:
            response_headers += [
                ("content-type", "application/json"),
                ("content-length", str(len(payload))),
            ]
        conn.send_headers(stream_id, response_headers, end_stream=not payload)
        if payload:
            conn.send_data(stream_id, payload, end_stream=True)
