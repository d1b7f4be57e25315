"""BEP 42 secure node ids: the first 21 bits of a node's id follow from its external IP.

A node may only take ids whose first 21 bits are the CRC32-C of its IP (masked to a few
network bits, plus 3 random bits ``r`` kept in the id's last byte), so nobody can place
nodes at chosen points of the id space without controlling that many addresses. We derive
our id so (`secure_node_id`) when we know our external IP, and check others' leniently as
libtorrent does by default (``dht_enforce_node_id`` off): a node whose id does not match is
counted, not refused, and addresses in local ranges are exempt (`is_secure`).
"""

from __future__ import annotations

import ipaddress
import random
from typing import Final

from .node_id import ID_BYTES, NodeId

__all__ = ["crc32c", "is_secure", "secure_node_id"]

_V4_MASK: Final = bytes((0x03, 0x0F, 0x3F, 0xFF))
_V6_MASK: Final = bytes((0x01, 0x03, 0x07, 0x0F, 0x1F, 0x3F, 0x7F, 0xFF))


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE: Final = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC32-C (Castagnoli, RFC 3720 B.4) of ``data``; BEP 42 hashes 4 or 8 bytes with it."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _prefix_crc(ip: str, r: int) -> int:
    packed = ipaddress.ip_address(ip).packed
    mask = _V4_MASK if len(packed) == 4 else _V6_MASK
    masked = bytearray(octet & bits for octet, bits in zip(packed, mask, strict=False))
    masked[0] |= (r & 7) << 5
    return crc32c(bytes(masked))


def secure_node_id(ip: str, rng: random.Random | None = None) -> NodeId:
    """A random node id that BEP 42 accepts for a node whose external IP is ``ip``."""
    source = rng if rng is not None else random.SystemRandom()
    rand = source.getrandbits(8)
    crc = _prefix_crc(ip, rand & 7)
    raw = bytearray(source.getrandbits(8) for _ in range(ID_BYTES))
    raw[0] = crc >> 24 & 0xFF
    raw[1] = crc >> 16 & 0xFF
    raw[2] = (crc >> 8 & 0xF8) | (raw[2] & 0x07)
    raw[19] = rand
    return NodeId.from_bytes(bytes(raw))


def is_secure(node_id: NodeId, ip: str) -> bool:
    """Whether ``node_id`` is one BEP 42 allows at ``ip``; always for local addresses
    (private, loopback, link-local, shared and reserved ranges: libtorrent exempts them)."""
    address = ipaddress.ip_address(ip)
    if not address.is_global:
        return True
    raw = node_id.to_bytes()
    crc = _prefix_crc(ip, raw[19] & 7)
    return (
        raw[0] == crc >> 24 & 0xFF
        and raw[1] == crc >> 16 & 0xFF
        and raw[2] & 0xF8 == crc >> 8 & 0xF8
    )
