"""Write tokens for announce_peer and put (BEP 5 "Overview", BEP 44 "Messages").

A token is SHA-1 of the requester's IP, a secret that changes every five minutes and the target
it may write to (BEP 44 allows tying it to the key), truncated. Tokens made with the current or
the previous secret are accepted, so one stays valid for 5 to 10 minutes, as in BitTorrent.

Each period's secret is derived from one master secret and the period number, so the issuer is a
frozen value: no rotation timer, no state, and ``now`` comes from the caller.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import secrets
from typing import Final

import attrs

from .node_id import NodeId

__all__ = ["TOKEN_ROTATION", "WriteTokens"]

TOKEN_ROTATION: Final = 5 * 60.0
"""Seconds between secret changes (BEP 5)."""


def _check_secret(_: object, __: attrs.Attribute[bytes], value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) < 16:
        raise ValueError("the master secret must be at least 16 bytes")


@attrs.frozen
class WriteTokens:
    """Issues and checks write tokens bound to a requester IP and a target."""

    secret: bytes = attrs.field(
        factory=lambda: secrets.token_bytes(32), repr=False, validator=_check_secret
    )
    rotation: float = attrs.field(default=TOKEN_ROTATION)
    size: int = attrs.field(default=8)

    @rotation.validator
    def _check_rotation(self, _: attrs.Attribute[float], value: float) -> None:
        if not value > 0:
            raise ValueError(f"rotation must be positive, got {value}")

    @size.validator
    def _check_size(self, _: attrs.Attribute[int], value: int) -> None:
        if not 4 <= value <= 20:
            raise ValueError(f"token size must be 4..20 bytes, got {value}")

    def issue(self, ip: str, target: NodeId, now: float) -> bytes:
        """The token to hand ``ip`` in a get_peers or get response about ``target``."""
        return self._token(ip, target, self._period(now))

    def verify(self, token: bytes, ip: str, target: NodeId, now: float) -> bool:
        """Whether ``token`` was issued to ``ip`` for ``target`` in this period or the last."""
        period = self._period(now)
        return any(
            hmac.compare_digest(token, self._token(ip, target, p)) for p in (period, period - 1)
        )

    def _period(self, now: float) -> int:
        return math.floor(now / self.rotation)

    def _token(self, ip: str, target: NodeId, period: int) -> bytes:
        key = hmac.digest(self.secret, period.to_bytes(8, "big", signed=True), "sha256")
        packed = ipaddress.ip_address(ip).packed
        return hashlib.sha1(packed + key + target.to_bytes()).digest()[: self.size]
