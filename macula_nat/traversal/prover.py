"""PathProver: which peer addresses are proven to carry datagrams both ways (sans-IO).

One prover per link, both ends sharing the link id and key from the signalling (an
:class:`~macula_nat.traversal.punch_wire.Offer`). An address is *proven* when it answered, with a
valid ACK, a PROBE this side sent to that very address: the peer holds the key (the tag), the
answer is fresh (our single-use nonce, within ``nonce_lifetime``), it names the address we
challenged, and the path works both ways (it came back from where it went).

A valid PROBE from an address not yet proven is answered with an ACK and reported, so the caller
probes that address back: this is how a side adopts the address its peer's packets really come
from (a symmetric NAT's fresh mapping, or a new port after a NAT rebinding). A PROBE alone
proves nothing, and only a *fresh* one is answered (RFC 9000 8.2, RFC 8445 7.2): its nonce
carries the sender's clock and is accepted once (:class:`~.replay.ReplayWindow`), so a captured
probe replayed from an attacker's address gets no answer and no probe back. A PROBE that arrives
from the very address it was sent to went through a forwarder there (no NAT rewrites a source to
the destination it was sent to): it is refused too, so a forwarder at one address never gets a
peer to answer for it. Frames whose sender role is our own are reflections and are rejected.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Callable

import attrs

from macula_nat.net.address import Address, normalise_address
from macula_nat.traversal.punch_wire import (
    FrameKind,
    ProbeError,
    ProbeFrame,
    Role,
    decode_probe,
    encode_probe,
)
from macula_nat.traversal.replay import ReplayWindow, stamped_nonce

__all__ = ["PathProver", "ProverStatistics", "Received"]

NONCE_SIZE = 8


@attrs.frozen
class Received:
    """What one arrived frame means for the caller."""

    reply: bytes | None = None
    """An ACK to send back to the frame's source."""
    probe_back: bool = False
    """The source is not proven yet, nor probed in the last ``probe_back_gap``: send it a PROBE
    of our own (so a stream of probes from one source is answered with at most its bytes, plus
    one probe a gap)."""
    proven: Address | None = None
    """The source just proved itself (an ACK to our nonce, from where the nonce went)."""
    rtt: float | None = None
    """Round trip of the answered PROBE, when ``proven``."""
    authentic: bool = False
    """The frame carried the link's key (it may still be a replay: only ``reply`` says a PROBE
    was fresh)."""


@attrs.frozen
class ProverStatistics:
    probes_sent: int
    probes_received: int
    acks_received: int
    rejected: int
    """Frames with a bad tag, our own role, or an ACK to no nonce of ours from that address."""
    replays: int
    """Authentic PROBEs refused unanswered: seen before, or older than the nonce lifetime."""
    looped: int
    """Authentic PROBEs refused unanswered: they came from the address they were sent to."""


class PathProver:
    """Probes and proofs of one link (``link_id``, ``key``) as seen by ``role``."""

    def __init__(
        self,
        link_id: bytes,
        key: bytes,
        role: Role,
        *,
        max_outstanding: int = 4096,
        max_seen: int = 4096,
        nonce_lifetime: float = 30.0,
        probe_back_gap: float = 1.0,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.link_id = link_id
        self.key = key
        self.role = role
        self._max_outstanding = max_outstanding
        self._lifetime = nonce_lifetime
        self._random = random_bytes
        self._outstanding: OrderedDict[bytes, tuple[Address, float]] = OrderedDict()
        self._gap = probe_back_gap
        self._probed: OrderedDict[Address, float] = OrderedDict()
        """When each address was last probed (as many as ``max_outstanding``, latest last)."""
        self._proven: set[Address] = set()
        self._seen = ReplayWindow(nonce_lifetime, max_seen)
        self._probes_sent = self._probes_received = self._acks_received = self._rejected = 0
        self._replays = self._looped = 0

    @property
    def proven(self) -> frozenset[Address]:
        """Every address proven so far."""
        return frozenset(self._proven)

    def probe(self, address: Address, now: float) -> bytes:
        """A PROBE to send to ``address`` now; its nonce waits for the ACK."""
        address = normalise_address(address)
        nonce = stamped_nonce(now, NONCE_SIZE, self._random)
        self._outstanding[nonce] = (address, now)
        self._probed[address] = now
        self._probed.move_to_end(address)
        for table in (self._outstanding, self._probed):
            while len(table) > self._max_outstanding:
                table.popitem(last=False)
        self._probes_sent += 1
        frame = ProbeFrame(FrameKind.PROBE, self.role, self.link_id, nonce, address)
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
            if frame.address == source:
                self._looped += 1
                return Received(authentic=True)
            if not self._seen.accept(frame.nonce):
                self._replays += 1
                return Received(authentic=True)
            ack = ProbeFrame(FrameKind.ACK, self.role, self.link_id, frame.nonce, frame.address)
            return Received(
                reply=encode_probe(ack, self.key),
                probe_back=source not in self._proven
                and not now - self._probed.get(source, -math.inf) < self._gap,
                authentic=True,
            )
        sent = self._outstanding.get(frame.nonce)
        if (
            sent is None
            or sent[0] != source
            or frame.address != source
            or now - sent[1] > self._lifetime
        ):
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
            self._probes_sent,
            self._probes_received,
            self._acks_received,
            self._rejected,
            self._replays,
            self._looped,
        )
