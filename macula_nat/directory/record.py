"""A node's directory record: what peers need to reach it, as a compact bencoded value.

The record is the ``v`` of a BEP 44 mutable item under the node's own ed25519 key, so the
item's signature and sequence number authenticate and order it; the value itself carries the
NAT profile (compact JSON; a dual-stack node's IPv6 one beside it), the home relay (and its
address of the other IP version, when it has one), candidate addresses and an expiry (UNIX
seconds).
Keys are one letter to keep a realistic record well inside BEP 44's 1000 bytes.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Final

import attrs

from macula_nat.dht import bencoding
from macula_nat.dht.compact import Address, decode_peer, encode_peer
from macula_nat.dht.mutable_item import MAX_VALUE_SIZE
from macula_nat.nat.profile import NatProfile
from macula_nat.net.address import normalise_addresses, optional_address

__all__ = ["MAX_CANDIDATES", "NodeRecord", "RecordError"]

logger = logging.getLogger(__name__)

MAX_CANDIDATES: Final = 16


class RecordError(ValueError):
    """Bytes that are not a node record."""


@attrs.frozen(kw_only=True)
class NodeRecord:
    """What a node publishes about itself; ``seq`` is the BEP 44 item's sequence number."""

    profile: NatProfile | None
    profile6: NatProfile | None = None
    """A dual-stack node's IPv6 profile (``profile`` is then its IPv4 one): its IPv6 side is
    classified on its own (often a stateful firewall, no NAT). Records without it (from
    single-stack nodes and older versions) decode with None; older readers ignore it."""
    home_relay: Address | None = attrs.field(default=None, converter=optional_address)
    home_relay_alternate: Address | None = attrs.field(default=None, converter=optional_address)
    """The home relay's address of the other IP version, when it is dual-stack: a peer whose
    socket cannot reach ``home_relay`` (IPv6-only, IPv4-only) reaches the same relay here."""
    candidates: tuple[Address, ...] = attrs.field(default=(), converter=normalise_addresses)
    expires_at: int = attrs.field(converter=int)
    """UNIX time (whole seconds) after which the record is no longer valid."""
    seq: int = 0

    @candidates.validator
    def _check_candidates(self, _: attrs.Attribute[Any], value: tuple[Address, ...]) -> None:
        if len(value) > MAX_CANDIDATES:
            raise ValueError(f"at most {MAX_CANDIDATES} candidate addresses, not {len(value)}")

    def encode(self) -> bytes:
        """The bencoded value (without ``seq``, which the item carries), at most BEP 44's
        1000 bytes: a record that would be longer (a dual-stack node with many addresses)
        leaves out its profiles' ``observers`` first (no peer reads them), then its last
        candidates, as few as it must, and warns of the candidates it left out."""
        data = self._encode(observers=True, candidates=len(self.candidates))
        if len(data) <= MAX_VALUE_SIZE:
            return data
        for kept in range(len(self.candidates), -1, -1):
            data = self._encode(observers=False, candidates=kept)
            if len(data) <= MAX_VALUE_SIZE:
                level = logging.DEBUG if kept == len(self.candidates) else logging.WARNING
                logger.log(
                    level, "record cut to BEP 44's %d bytes: profiles without observers, "
                    "%d of %d candidates kept", MAX_VALUE_SIZE, kept, len(self.candidates),
                )  # fmt: skip
                return data
        raise RecordError(f"a record without candidates is still {len(data)} bytes")

    def _encode(self, *, observers: bool, candidates: int) -> bytes:
        value: dict[bytes, Any] = {
            b"c": [encode_peer(address) for address in self.candidates[:candidates]],
            b"e": self.expires_at,
        }
        if self.profile is not None:
            value[b"p"] = _compact(self.profile, observers)
        if self.profile6 is not None:
            value[b"6"] = _compact(self.profile6, observers)
        if self.home_relay is not None:
            value[b"r"] = encode_peer(self.home_relay)
        if self.home_relay_alternate is not None:
            value[b"a"] = encode_peer(self.home_relay_alternate)
        return bencoding.encode(value)

    @classmethod
    def decode(cls, data: bytes, seq: int) -> NodeRecord:
        """The record in ``data`` (an item's value) at ``seq``; RecordError for anything else."""
        try:
            value = bencoding.decode(data)
            if not isinstance(value, dict):
                raise RecordError("a record is a dictionary")
            candidates = value.get(b"c", [])
            expires_at = value[b"e"]
            if not isinstance(candidates, list) or not isinstance(expires_at, int):
                raise RecordError("'c' must be a list and 'e' an integer")
            profile = value.get(b"p")
            profile6 = value.get(b"6")
            relay = value.get(b"r")
            alternate = value.get(b"a")
            return cls(
                profile=None if profile is None else NatProfile.from_json(json.loads(profile)),
                profile6=None if profile6 is None else NatProfile.from_json(json.loads(profile6)),
                home_relay=None if relay is None else decode_peer(relay),
                home_relay_alternate=None if alternate is None else decode_peer(alternate),
                candidates=tuple(decode_peer(c) for c in candidates),
                expires_at=expires_at,
                seq=seq,
            )
        except RecordError:
            raise
        except Exception as exc:  # bencoding, JSON, profile and address errors alike
            raise RecordError(f"not a node record: {exc}") from None


def _compact(profile: NatProfile, observers: bool = True) -> bytes:
    """A profile as the record's compact JSON: what is derived or usually absent left out
    (and its observers unless ``observers``)."""
    value = profile.to_json()
    if not observers:
        value.pop("observers", None)
    value.pop("nat_type", None)  # derived; from_json ignores it
    if value.get("mapped") is None:
        value.pop("mapped", None)  # most nodes have none; older readers ignore it
    if not value.get("udp_blocked"):
        value.pop("udp_blocked", None)  # likewise: records stay as they were
    return json.dumps(value, separators=(",", ":")).encode()
