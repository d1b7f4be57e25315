"""PathProver: which peer addresses are proven to carry datagrams both ways (sans-IO).

One prover per link, both ends sharing the link id and key from the signalling (an
:class:`~macula_nat.traversal.punch_wire.Offer`). An address is *proven* when it answered, with a
valid ACK, a PROBE this side sent to that very address: the peer holds the key (the tag), the
answer is fresh (our nonce) and the path works both ways (it came back from where it went).

A valid PROBE from an address not yet proven is answered with an ACK and reported, so the caller
probes that address back: this is how a side adopts the address its peer's packets really come
from (a symmetric NAT's fresh mapping, or a new port after a NAT rebinding). A PROBE alone
proves nothing: it could be a replay from an attacker's address, which cannot answer our nonce.
Frames whose sender role is our own are reflections and are rejected.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable

import attrs

from macula_nat.net.address import Address
from macula_nat.traversal.punch_wire import (
    FrameKind,
    ProbeError,
    ProbeFrame,
    Role,
    decode_probe,
    encode_probe,
)

__all__ = ["PathProver", "ProverStatistics", "Received"]

NONCE_SIZE = 8


@attrs.frozen
class Received:
    """What one arrived frame means for the caller."""

    reply: bytes | None = None
    """An ACK to send back to the frame's source."""
    probe_back: bool = False
    """The source is not proven yet: send it a PROBE of our own."""
    proven: Address | None = None
    """The source just proved itself (an ACK to our nonce, from where the nonce went)."""
    rtt: float | None = None
    """Round trip of the answered PROBE, when ``proven``."""
    authentic: bool = False
    """The frame carried the link's key (a PROBE may still be a replay from elsewhere: that
    alone proves no path, but QUIC datagrams from its source may be let through to QUIC, which
    authenticates them itself)."""


@attrs.frozen
class ProverStatistics:
    probes_sent: int
    probes_received: int
    acks_received: int
    rejected: int
    """Frames with a bad tag, our own role, or an ACK to no nonce of ours from that address."""


class PathProver:
    """Probes and proofs of one link (``link_id``, ``key``) as seen by ``role``."""

    def __init__(
        self,
        link_id: bytes,
        key: bytes,
        role: Role,
        *,
        max_outstanding: int = 4096,
        nonce_lifetime: float = 30.0,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.link_id = link_id
        self.key = key
        self.role = role
        self._max_outstanding = max_outstanding
        self._lifetime = nonce_lifetime
        self._random = random_bytes
        self._outstanding: OrderedDict[bytes, tuple[Address, float]] = OrderedDict()
        self._proven: set[Address] = set()
        self._probes_sent = self._probes_received = self._acks_received = self._rejected = 0

    @property
    def proven(self) -> frozenset[Address]:
        """Every address proven so far."""
        return frozenset(self._proven)

    def probe(self, address: Address, now: float) -> bytes:
        """A PROBE to send to ``address`` now; its nonce waits for the ACK."""
        nonce = self._random(NONCE_SIZE)
        self._outstanding[nonce] = (address, now)
        while len(self._outstanding) > self._max_outstanding:
            self._outstanding.popitem(last=False)
        self._probes_sent += 1
        frame = ProbeFrame(FrameKind.PROBE, self.role, self.link_id, nonce)
        return encode_probe(frame, self.key)

    def receive(self, data: bytes, source: Address, now: float) -> Received:
        """Handle a frame of this link from ``source``."""
        try:
            frame = decode_probe(data, self.key)
        except ProbeError:
            self._rejected += 1
            return Received()
        if frame.role == self.role or frame.link_id != self.link_id:
            self._rejected += 1
            return Received()
        if frame.kind == FrameKind.PROBE:
            self._probes_received += 1
            ack = ProbeFrame(FrameKind.ACK, self.role, self.link_id, frame.nonce)
            return Received(
                reply=encode_probe(ack, self.key),
                probe_back=source not in self._proven,
                authentic=True,
            )
        sent = self._outstanding.get(frame.nonce)
        if sent is None or sent[0] != source or now - sent[1] > self._lifetime:
            self._rejected += 1
            return Received(authentic=True)
        del self._outstanding[frame.nonce]
        self._acks_received += 1
        self._proven.add(source)
        return Received(proven=source, rtt=now - sent[1], authentic=True)

    def forget(self, address: Address) -> None:
        """``address`` no longer counts as proven (its path died)."""
        self._proven.discard(address)

    def statistics(self) -> ProverStatistics:
        return ProverStatistics(
            self._probes_sent, self._probes_received, self._acks_received, self._rejected
        )
