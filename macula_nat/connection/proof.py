"""The client's proof of its node key, bound to one TLS session (sans-IO).

qh3's server never requests a client certificate, so the client authenticates inside the
connection instead: on its first stream, before any application data, it sends its node id and
an ed25519 signature over the session's exporter secret and both node ids (:func:`make_proof`);
the server delivers nothing of the connection until :func:`check_proof` accepts it.

The exporter is RFC 8446's ``Derive-Secret(master_secret, label, transcript_hash)`` with our own
label, the construction TLS uses for its exporter and resumption master secrets. The master
secret comes from the (EC)DHE exchange, so only the two ends of this TLS session know it; the
transcript holds both hello randoms and the server's certificate and signature. So the signature
proves the client's key to *this* server in *this* session: a relay or man in the middle runs
a different session with each side (another master secret, another exporter), and a proof
recorded from one connection does not verify on any other. That is what a client certificate's
CertificateVerify gives: a signature by the client's key over this session's transcript.
"""

from __future__ import annotations

from typing import Final, Protocol

from macula_nat.identity import NODE_ID_SIZE, SIGNATURE_SIZE, NodeId, NodeKey

__all__ = [
    "EXPORTER_LABEL",
    "PROOF_SIZE",
    "BadProof",
    "KeySchedule",
    "check_proof",
    "exporter",
    "make_proof",
]

EXPORTER_LABEL: Final = b"EXPORTER-macula-node-id"
"""The Derive-Secret label of the exporter the proof signs (distinct from every TLS label)."""
_PURPOSE: Final = "macula-nat/quic-client-proof/v1"
PROOF_SIZE: Final = NODE_ID_SIZE + SIGNATURE_SIZE
"""A proof on the wire: the client's node id, then its signature."""


class KeySchedule(Protocol):
    """The part of a TLS 1.3 key schedule (aioquic's and qh3's ``tls.Context.key_schedule``)
    the exporter needs: once the handshake is complete its secret is the master secret and its
    transcript runs through the client's Finished, on both sides."""

    def derive_secret(self, label: bytes) -> bytes: ...


class BadProof(ValueError):
    """A proof that does not prove the key it names for this session and server."""


def exporter(schedule: KeySchedule) -> bytes:
    """This session's exporter secret; call once the handshake is complete."""
    return schedule.derive_secret(EXPORTER_LABEL)


def _signed(secret: bytes, client: NodeId, server: NodeId) -> bytes:
    return secret + client.raw + server.raw


def make_proof(key: NodeKey, server: NodeId, secret: bytes) -> bytes:
    """The proof the client with ``key`` sends ``server`` in the session of ``secret``."""
    client = key.node_id
    return client.raw + key.sign_for(_PURPOSE, _signed(secret, client, server))


def check_proof(proof: bytes, server: NodeId, secret: bytes) -> NodeId:
    """The client ``proof`` proves to ``server`` in the session of ``secret``; :class:`BadProof`
    if it is malformed or its signature is not the named key's over this session."""
    if len(proof) != PROOF_SIZE:
        raise BadProof(f"a proof is {PROOF_SIZE} bytes, not {len(proof)}")
    try:
        client = NodeId(proof[:NODE_ID_SIZE])
    except ValueError as exc:
        raise BadProof(f"proof names no node: {exc}") from None
    if not client.verify_for(_PURPOSE, proof[NODE_ID_SIZE:], _signed(secret, client, server)):
        raise BadProof(f"proof of {client.short()} does not verify for this session")
    return client
