"""A local certificate chain shaped like Apple's, for development and tests.

root CA -> "WWDR-like" intermediate -> Pass Type ID certificate (subject UID = pass type
id, OU = team id, as Apple issues them), plus an ES256 APNs auth key. Passes signed with
it verify with openssl against the dev root; real devices reject them, of course.
"""

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID


@dataclass
class DevChain:
    root_cert: x509.Certificate
    root_key: object
    wwdr_cert: x509.Certificate
    wwdr_key: object
    pass_cert: x509.Certificate
    pass_key: object
    apns_key: object


def _name(*attributes):
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in attributes])


def issue(
    subject,
    public_key,
    issuer,
    issuer_key,
    *,
    ca,
    path_length=None,
    days=365,
    not_before=None,
    extensions=(),
):
    """Sign a certificate; a small helper shared by the dev chain and the tests.

    Every certificate carries the extensions a strict verifier (OpenSSL's X509_STRICT,
    the default of Python 3.13's TLS context) requires: basic constraints and key usage
    (critical), and Subject and Authority Key Identifiers, which link it to its issuer.
    """
    now = not_before or datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_chain(team_id, pass_type_id, *, pass_days=365, key_size=2048):
    root_key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    root_name = _name(
        (NameOID.COMMON_NAME, "Dev Root CA (not Apple)"),
        (NameOID.ORGANIZATION_NAME, "Business Cards dev"),
    )
    root = issue(root_name, root_key.public_key(), root_name, root_key, ca=True, days=3650)
    wwdr_key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    wwdr_name = _name(
        (NameOID.COMMON_NAME, "Dev Worldwide Developer Relations Certification Authority"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "G4"),
        (NameOID.ORGANIZATION_NAME, "Business Cards dev"),
    )
    wwdr = issue(
        wwdr_name, wwdr_key.public_key(), root_name, root_key, ca=True, path_length=0, days=3650
    )
    pass_key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    pass_name = _name(
        (NameOID.USER_ID, pass_type_id),
        (NameOID.COMMON_NAME, f"Pass Type ID: {pass_type_id}"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, team_id),
        (NameOID.ORGANIZATION_NAME, "Business Cards dev"),
    )
    pass_cert = issue(
        pass_name, pass_key.public_key(), wwdr_name, wwdr_key, ca=False, days=pass_days
    )
    apns_key = ec.generate_private_key(ec.SECP256R1())
    return DevChain(root, root_key, wwdr, wwdr_key, pass_cert, pass_key, apns_key)


def cert_pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key, password=None):
    encryption = (
        serialization.BestAvailableEncryption(password.encode())
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def write_chain(chain, directory):
    """Write the chain as PEM files; returns {purpose: path}. Keys are written 0600."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "root": ("dev-root.pem", cert_pem(chain.root_cert)),
        "wwdr": ("dev-wwdr.pem", cert_pem(chain.wwdr_cert)),
        "pass_cert": ("pass-cert.pem", cert_pem(chain.pass_cert)),
        "pass_key": ("pass-key.pem", key_pem(chain.pass_key)),
        "apns_key": ("apns-key.p8", key_pem(chain.apns_key)),
    }
    paths = {}
    for purpose, (name, data) in files.items():
        path = directory / name
        path.write_bytes(data)
        if purpose.endswith("_key"):
            path.chmod(0o600)
        paths[purpose] = path
    return paths
