"""A node's directory through its relay, for a node whose UDP is blocked (so no DHT): the
bodies of DIRECTORY_QUERY / DIRECTORY_ANSWER (sans-IO) and how a relay answers one from its
gateway's :class:`~macula_nat.directory.Directory`.

Bodies (integers big-endian)::

    PUBLISH query    seq (8) | ttl seconds (4) | signature (64) | record value (<= 1000)
    RESOLVE query    target node id (32)
    RESOLVE answer   seq (8) | record value
    LIST answer      per relay: length (1) | compact address (6 or 18), at most MAX_RELAYS

A published record is a BEP 44 mutable item under the node's own key and the record salt,
signed by the node: the relay checks the signature against the node id of the registration the
query came on, so a node publishes only its own record and the relay cannot alter it (the DHT's
nodes check the same signature again). A resolved record comes back as the relay's directory
gives it; a relay that lied about another node's record could only make a connection fail, as
dropping its datagrams would: the peers' QUIC handshake authenticates node ids end to end.
"""

from __future__ import annotations

import logging
import math
import struct
from typing import Final

import trio

from macula_nat.dht.compact import CompactError, decode_peer, encode_peer
from macula_nat.dht.mutable_item import MutableItem
from macula_nat.directory import Directory, DirectoryError, NodeRecord, RecordError
from macula_nat.directory.mainline import PROFILE_SALT
from macula_nat.identity import NODE_ID_SIZE, SIGNATURE_SIZE, NodeId
from macula_nat.net.address import Address

from .frames import MAX_DIRECTORY_BODY, DirectoryOp, DirectoryStatus

__all__ = [
    "MAX_RELAYS",
    "MAX_TTL",
    "DirectoryPathError",
    "ceil_ttl",
    "decode_publish",
    "decode_record",
    "decode_relays",
    "encode_publish",
    "encode_record",
    "encode_relays",
    "serve_query",
]

logger = logging.getLogger(__name__)

MAX_RELAYS: Final = 32
"""Relays in one LIST answer at most (a node measures a few dozen at most anyway)."""
MAX_TTL: Final = 86_400
"""The longest a record published through a relay lives, in seconds (a day)."""
_PUBLISH: Final = struct.Struct(">QI")
_SEQ: Final = struct.Struct(">Q")
Answer = tuple[DirectoryStatus, bytes]


class DirectoryPathError(ValueError):
    """A directory body that is malformed, or a record not signed by the node it claims."""


def encode_publish(item: MutableItem, ttl: int) -> bytes:
    """The PUBLISH body for ``item`` (the node's signed record) to live ``ttl`` seconds."""
    return _PUBLISH.pack(item.seq, ttl) + item.signature + item.value


def decode_publish(node: NodeId, body: bytes) -> tuple[MutableItem, int]:
    """The signed record and TTL in a PUBLISH body sent on ``node``'s registration;
    DirectoryPathError unless it is well formed, a record, and signed by ``node``."""
    head = _PUBLISH.size + SIGNATURE_SIZE
    if len(body) <= head:
        raise DirectoryPathError(f"a PUBLISH body is over {head} bytes, not {len(body)}")
    seq, ttl = _PUBLISH.unpack_from(body)
    if not 0 < ttl <= MAX_TTL:
        raise DirectoryPathError(f"ttl must be 1 to {MAX_TTL} s, not {ttl}")
    try:
        item = MutableItem(node.raw, seq, body[head:], body[_PUBLISH.size : head], PROFILE_SALT)
        NodeRecord.decode(item.value, item.seq)
    except (ValueError, RecordError) as exc:
        raise DirectoryPathError(f"not a record: {exc}") from None
    if not item.verify():
        raise DirectoryPathError(f"the record is not signed by {node.short()}")
    return item, ttl


def encode_record(record: NodeRecord) -> bytes:
    return _SEQ.pack(record.seq) + record.encode()


def decode_record(body: bytes) -> NodeRecord:
    """The record in a RESOLVE answer; DirectoryPathError for anything else."""
    if len(body) <= _SEQ.size:
        raise DirectoryPathError(f"a RESOLVE answer is over {_SEQ.size} bytes, not {len(body)}")
    try:
        return NodeRecord.decode(body[_SEQ.size :], _SEQ.unpack_from(body)[0])
    except RecordError as exc:
        raise DirectoryPathError(str(exc)) from None


def encode_relays(relays: list[Address]) -> bytes:
    """A LIST answer: the first :data:`MAX_RELAYS` of ``relays``."""
    parts = []
    for relay in relays[:MAX_RELAYS]:
        peer = encode_peer(relay)
        parts.append(bytes((len(peer),)) + peer)
    return b"".join(parts)


def decode_relays(body: bytes) -> list[Address]:
    """The relays in a LIST answer; DirectoryPathError for anything else."""
    relays: list[Address] = []
    offset = 0
    while offset < len(body):
        size = body[offset]
        peer = body[offset + 1 : offset + 1 + size]
        if len(peer) != size or len(relays) == MAX_RELAYS:
            raise DirectoryPathError("a LIST answer is cut short or too long")
        try:
            relays.append(decode_peer(peer))
        except CompactError as exc:
            raise DirectoryPathError(str(exc)) from None
        offset += 1 + size
    return relays


async def serve_query(
    directory: Directory, node: NodeId, op: DirectoryOp, body: bytes, timeout: float
) -> Answer:
    """Carry out ``node``'s query on ``directory`` within ``timeout`` seconds (the relay's
    part); never raises for anything the node sent or the directory did."""
    try:
        with trio.fail_after(timeout):
            return await _serve(directory, node, op, body)
    except ValueError as exc:  # DirectoryPathError, or what the directory refused
        logger.info("directory query %s from %s refused: %s", op.name, node.short(), exc)
        return DirectoryStatus.REFUSED, b""
    except (DirectoryError, trio.TooSlowError) as exc:
        logger.info("directory query %s from %s failed: %r", op.name, node.short(), exc)
        return DirectoryStatus.FAILED, b""


async def _serve(directory: Directory, node: NodeId, op: DirectoryOp, body: bytes) -> Answer:
    if op is DirectoryOp.PUBLISH:
        item, ttl = decode_publish(node, body)
        await directory.publish_item(item, float(ttl))
        return DirectoryStatus.OK, b""
    if op is DirectoryOp.RESOLVE:
        if len(body) != NODE_ID_SIZE:
            raise DirectoryPathError(f"a RESOLVE body is a node id, not {len(body)} bytes")
        try:
            target = NodeId(body)
        except ValueError as exc:
            raise DirectoryPathError(str(exc)) from None
        record = await directory.resolve_record(target.text())
        if record is None:
            return DirectoryStatus.NOT_FOUND, b""
        answer = encode_record(record)
        if len(answer) > MAX_DIRECTORY_BODY:  # a record is at most 1000 bytes: never here
            raise DirectoryError(f"the record of {body.hex()} is over {MAX_DIRECTORY_BODY} bytes")
        return DirectoryStatus.OK, answer
    if body:
        raise DirectoryPathError("a LIST query has no body")
    return DirectoryStatus.OK, encode_relays(await directory.list_relays())


def ceil_ttl(ttl: float) -> int:
    """A record's TTL as a PUBLISH carries it: whole seconds, 1 to :data:`MAX_TTL`."""
    if not (ttl > 0 and math.isfinite(ttl)):
        raise ValueError(f"ttl must be a positive number of seconds, not {ttl!r}")
    return min(MAX_TTL, math.ceil(ttl))
