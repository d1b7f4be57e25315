"""Self-signed X.509 certificates that carry a node's ed25519 key, and reading the key back.

A certificate proves nothing by itself here: there is no CA. TLS proves the peer holds the
private key of the certificate's public key, and the caller checks that key is the node id it
expected (:func:`peer_node_id`).
"""

from __future__ import annotations

import datetime
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import NameOID

from macula_nat.identity import NodeId, NodeKey

__all__ = ["NotANodeCertificate", "node_certificate", "peer_node_id"]

VALIDITY: Final = datetime.timedelta(days=3650)
"""Validity of a node certificate; nobody checks it (no CA), but X.509 requires one."""


class NotANodeCertificate(ValueError):
    """A certificate whose public key is not an ed25519 key, so it names no node."""


def node_certificate(key: NodeKey, now: datetime.datetime | None = None) -> x509.Certificate:
    """A self-signed certificate for ``key``: subject CN is the node id's text form."""
    moment = now if now is not None else datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, key.node_id.text())])
    private = key.private_key
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(moment - datetime.timedelta(days=1))
        .not_valid_after(moment + VALIDITY)
        .sign(private, algorithm=None)
    )


def peer_node_id(certificate: x509.Certificate) -> NodeId:
    """The node id a certificate's public key is; :class:`NotANodeCertificate` if not ed25519."""
    public = certificate.public_key()
    if not isinstance(public, Ed25519PublicKey):
        raise NotANodeCertificate(f"certificate key is {type(public).__name__}, not ed25519")
    return NodeId(public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
