"""160-bit Kademlia node ids and the XOR metric (BEP 5 "Overview").

Ids, info-hashes and BEP 44 targets share one space: ``distance(a, b) = a XOR b`` read as an
unsigned integer, smaller is closer. A `NodeId` holds the integer so distances cost one XOR.
"""

from __future__ import annotations

import random
import secrets
from typing import Final

import attrs

__all__ = ["ID_BITS", "ID_BYTES", "NodeId"]

ID_BITS: Final = 160
ID_BYTES: Final = ID_BITS // 8
_LIMIT: Final = 1 << ID_BITS


def _check_value(_: object, __: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"a node id is an int, got {value!r}")
    if not 0 <= value < _LIMIT:
        raise ValueError(f"node id {value} is outside 0..2**160-1")


@attrs.frozen(cache_hash=True, repr=False)
class NodeId:
    """A node id, info-hash or item target: an integer in ``0 .. 2**160 - 1``."""

    value: int = attrs.field(validator=_check_value)

    @classmethod
    def from_bytes(cls, raw: bytes) -> NodeId:
        """The id whose big-endian (network order) form is the 20 bytes ``raw``."""
        if not isinstance(raw, bytes | bytearray) or len(raw) != ID_BYTES:
            raise ValueError(f"a node id is {ID_BYTES} bytes, got {raw!r}")
        return cls(int.from_bytes(raw, "big"))

    @classmethod
    def from_hex(cls, text: str) -> NodeId:
        """The id written as 40 hex digits."""
        return cls.from_bytes(bytes.fromhex(text))

    @classmethod
    def random(cls, rng: random.Random | None = None) -> NodeId:
        """A uniformly random id: from ``rng`` when given (reproducible), else from `secrets`."""
        if rng is None:
            return cls(secrets.randbits(ID_BITS))
        return cls(rng.getrandbits(ID_BITS))

    def to_bytes(self) -> bytes:
        """The 20-byte network-order form used on the wire."""
        return self.value.to_bytes(ID_BYTES, "big")

    def distance(self, other: NodeId) -> int:
        """The XOR distance to ``other``."""
        return self.value ^ other.value

    def common_prefix_length(self, other: NodeId) -> int:
        """How many leading bits the two ids share: 0..159, or 160 for equal ids.

        The routing table files a node under this number (capped at its deepest bucket).
        """
        return ID_BITS - (self.value ^ other.value).bit_length()

    def __str__(self) -> str:
        return self.to_bytes().hex()

    def __repr__(self) -> str:
        return f"NodeId.from_hex({str(self)!r})"
