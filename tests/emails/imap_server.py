"""A small IMAP server over TLS on loopback, for `process_bounces --imap`: a mailbox of
messages, each with a UID and a \\Seen flag; just the commands imaplib's client sends
(CAPABILITY, LOGIN, SELECT, UID SEARCH UNSEEN, UID FETCH BODY.PEEK[], UID STORE +FLAGS,
CLOSE, LOGOUT). Its certificate is made for the test (self-signed, for 127.0.0.1), and
the client is given it as its only trusted CA, so TLS is checked as in production.
"""

import datetime
import ipaddress
import re
import socket
import ssl
import threading
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def self_signed_certificate(directory):
    """(certificate path, key path) for 127.0.0.1, valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "imap.crt", directory / "imap.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class Stored:
    uid: int
    data: bytes
    seen: bool = False


class ImapServer:
    def __init__(self, directory, user, password, messages):
        self.user, self.password = user, password
        self.messages = [Stored(uid, data) for uid, data in enumerate(messages, start=101)]
        self.cert, key = self_signed_certificate(directory)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(self.cert, key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.logins = []
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.listener.close()

    def client_context(self):
        """What a client trusting only this server's certificate uses."""
        return ssl.create_default_context(cafile=str(self.cert))

    def _serve(self):
        while True:
            try:
                raw, _address = self.listener.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(raw, server_side=True) as conn:
                    self._session(conn.makefile("rwb"))
            except (OSError, ssl.SSLError):
                continue

    def _session(self, stream):
        def send(line):
            stream.write(line if isinstance(line, bytes) else line.encode())
            stream.flush()

        send("* OK IMAP4rev1 ready\r\n")
        logged_in = False
        while True:
            line = stream.readline()
            if not line:
                return
            tag, _, rest = line.decode().rstrip("\r\n").partition(" ")
            command, _, args = rest.partition(" ")
            command = command.upper()
            if command == "CAPABILITY":
                send(f"* CAPABILITY IMAP4rev1\r\n{tag} OK done\r\n")
            elif command == "LOGIN":
                user, password = [a.strip('"') for a in args.split(" ", 1)]
                logged_in = (user, password) == (self.user, self.password)
                self.logins.append(user)
                send(f"{tag} {'OK' if logged_in else 'NO'} login\r\n")
            elif not logged_in:
                send(f"{tag} BAD not logged in\r\n")
            elif command == "SELECT":
                send(f"* {len(self.messages)} EXISTS\r\n{tag} OK [READ-WRITE] selected\r\n")
            elif command == "UID":
                self._uid(tag, args, send)
            elif command in ("CLOSE", "NOOP"):
                send(f"{tag} OK done\r\n")
            elif command == "LOGOUT":
                send(f"* BYE\r\n{tag} OK bye\r\n")
                return
            else:
                send(f"{tag} BAD unknown\r\n")

    def _uid(self, tag, args, send):
        sub, _, rest = args.partition(" ")
        sub = sub.upper()
        if sub == "SEARCH":
            uids = " ".join(str(m.uid) for m in self.messages if not m.seen)
            send(f"* SEARCH {uids}\r\n{tag} OK search\r\n".replace("SEARCH \r", "SEARCH\r"))
            return
        uid = int(rest.split(" ", 1)[0])
        stored = next((m for m in self.messages if m.uid == uid), None)
        if stored is None:
            send(f"{tag} OK nothing\r\n")
        elif sub == "FETCH":
            seq = self.messages.index(stored) + 1
            send(f"* {seq} FETCH (UID {uid} BODY[] {{{len(stored.data)}}}\r\n".encode())
            send(stored.data + b")\r\n")
            send(f"{tag} OK fetch\r\n")
        elif sub == "STORE" and re.search(r"\+FLAGS.*\\Seen", rest):
            stored.seen = True
            send(f"{tag} OK store\r\n")
        else:
            send(f"{tag} BAD unknown\r\n")
