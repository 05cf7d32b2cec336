"""Certificates from wallet.apple.devcerts (make_dev_certificates and the test servers)
carry what a strict X.509 verifier demands, such as Python 3.13's default TLS context."""

import socket
import ssl
import threading

from cryptography import x509

from tests.wallet.apns_server import make_server_certificate
from wallet.apple.devcerts import make_chain, write_chain


def extension(cert, kind):
    return cert.extensions.get_extension_for_class(kind)


def test_every_certificate_of_the_chain_is_linked_to_its_issuer():
    chain = make_chain("TEAM123456", "pass.com.example.cards", key_size=1024)
    issued_by = [
        (chain.root_cert, chain.root_cert),
        (chain.wwdr_cert, chain.root_cert),
        (chain.pass_cert, chain.wwdr_cert),
    ]
    for cert, issuer in issued_by:
        key_id = extension(cert, x509.SubjectKeyIdentifier).value
        assert key_id == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
        authority = extension(cert, x509.AuthorityKeyIdentifier).value
        assert authority.key_identifier == extension(issuer, x509.SubjectKeyIdentifier).value.digest
        assert extension(cert, x509.BasicConstraints).critical
        assert extension(cert, x509.KeyUsage).critical
    assert extension(chain.wwdr_cert, x509.KeyUsage).value.key_cert_sign
    assert not extension(chain.pass_cert, x509.BasicConstraints).value.ca


def test_a_strict_tls_client_accepts_the_loopback_server_certificate(tmp_path):
    """The same handshake the APNs tests make, with X509_STRICT on whatever the Python."""
    chain = make_chain("TEAM123456", "pass.com.example.cards")
    files = write_chain(chain, tmp_path)
    cert_path, key_path = make_server_certificate(chain, tmp_path)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_path, key_path)
    client_context = ssl.create_default_context(cafile=files["root"])
    client_context.verify_flags |= ssl.VERIFY_X509_STRICT

    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve_one():
            conn, _ = listener.accept()
            try:
                with server_context.wrap_socket(conn, server_side=True):
                    pass
            except ssl.SSLError:
                pass  # the client refused the certificate; the client side reports it

        server = threading.Thread(target=serve_one)
        server.start()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with client_context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                assert tls.getpeercert()["subject"] == ((("commonName", "127.0.0.1"),),)
        server.join(timeout=10)
