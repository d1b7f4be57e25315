"""TLS for relay links over TCP: the relay's certificate and both ends' contexts.

TLS here hides the relay protocol from middleboxes and lets it share port 443 with HTTPS; it is
not what authenticates the relay. A client learns who the relay is inside the relay handshake,
whose REGISTERED the relay signs with its node key and the client checks against the node id
it expects (:mod:`.handshake`), exactly as over UDP, and every frame after it is sealed under
keys of that handshake. So the certificate is self-signed, the client does not verify it, and a
TLS interceptor (a corporate proxy re-signing traffic) sees only sealed frames and cannot
register as the relay.

The certificate is still bound to the relay's node key for whoever wants to look: its key is
a fresh Ed25519 key (the node key never signs TLS handshakes), and the node key issues it, with
the node id as issuer and subject name. TLS 1.3 only (Ed25519 certificates need it).
"""

from __future__ import annotations

import datetime
import ssl
import tempfile
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from macula_nat.identity import NodeKey

__all__ = ["CERTIFICATE_LIFETIME", "client_context", "relay_certificate", "server_context"]

CERTIFICATE_LIFETIME: Final = datetime.timedelta(days=365)


def relay_certificate(key: NodeKey) -> tuple[bytes, bytes]:
    """A certificate issued by ``key`` for a fresh TLS key, and that key: both PEM."""
    tls_key = Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, key.node_id.text())])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(tls_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + CERTIFICATE_LIFETIME)
        .sign(key.private_key, None)
    )
    return (
        certificate.public_bytes(serialization.Encoding.PEM),
        tls_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def server_context(key: NodeKey) -> ssl.SSLContext:
    """The relay's TLS context, with a certificate from :func:`relay_certificate`.

    Blocking (``load_cert_chain`` reads files): call it at start-up or in a thread."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    certificate, private = relay_certificate(key)
    with tempfile.TemporaryDirectory(prefix="macula-relay-tls-") as folder:
        chain, secret = Path(folder, "cert.pem"), Path(folder, "key.pem")
        chain.write_bytes(certificate)
        secret.touch(mode=0o600)
        secret.write_bytes(private)
        context.load_cert_chain(chain, secret)
    return context


def client_context() -> ssl.SSLContext:
    """A node's TLS context for its relay: no certificate check (see the module docstring)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
