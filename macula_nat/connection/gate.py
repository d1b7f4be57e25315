"""The gate every QUIC Initial that may open a connection passes: address validation by
stateless Retry (RFC 9000 8.1.2) and handshake slots per source (:mod:`.admission`).

One :class:`HandshakeGate` per socket that accepts connections: a :class:`~.driver.Listener`
holds one, and so does a node's coordinator, which reads QUIC on the node's shared socket
itself. Its owner asks :meth:`HandshakeGate.admit` about each Initial from an address it has no
connection for; the gate validates the Initial's Retry token, if any, answers with a Retry when
unproven handshakes pile up, ends (through the owner's ``evict``) an unproven handshake when a
proven one needs its slot, and says which connection ids the handshake must be built with (so
the library's transport parameters name the original and Retry connection ids). The owner then
:meth:`~HandshakeGate.take`s a slot for the handshake it starts and
:meth:`~HandshakeGate.release`s it when the handshake ends.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Hashable
from typing import Final

import attrs
import trio
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.packet import QuicHeader, QuicPacketType, encode_quic_retry
from aioquic.quic.retry import QuicRetryTokenHandler

from macula_nat.connection.admission import HandshakeLimits, HandshakeSlots, Verdict
from macula_nat.net.address import Address, source_prefix
from macula_nat.net.endpoint import UdpEndpoint

__all__ = [
    "CID_LENGTH",
    "MIN_INITIAL_SIZE",
    "Admitted",
    "HandshakeGate",
    "HandshakeStatistics",
    "opens_connection",
]

logger = logging.getLogger(__name__)

CID_LENGTH: Final = 8
"""aioquic's connection id length (its default), needed to parse short headers."""
MIN_INITIAL_SIZE: Final = 1200
"""RFC 9000 14.1: a client's Initial datagram is at least this large."""
_VERSIONS: Final = frozenset(QuicConfiguration().supported_versions)


def opens_connection(header: QuicHeader, data: bytes) -> bool:
    """Whether the datagram ``data`` (its parsed ``header``) may open a connection: a full-size
    client Initial of a version we speak."""
    return (
        header.packet_type == QuicPacketType.INITIAL
        and len(data) >= MIN_INITIAL_SIZE
        and header.version in _VERSIONS
    )


@attrs.frozen
class Admitted:
    """An Initial the gate let through, and what its handshake must be built with."""

    source: str
    """Its source prefix (an IPv4 address, an IPv6 /64)."""
    original_cid: bytes
    """The destination connection id of the client's first Initial."""
    retry_cid: bytes | None
    """The source connection id of our Retry, when the Initial carried its token."""

    @property
    def proven(self) -> bool:
        """Whether the address proved it receives our packets (a valid Retry token)."""
        return self.retry_cid is not None


@attrs.frozen
class HandshakeStatistics:
    """A gate's handshakes and what it refused."""

    pending: int
    """Handshakes in flight."""
    unproven: int
    """Of those, from addresses that did not prove they receive our packets (no token)."""
    retries_sent: int
    refused: int
    """Initials dropped: a source over its share, a bad token."""
    evicted: int
    """Handshakes ended early to make room for a proven newcomer."""
    limits: HandshakeLimits


@attrs.define(eq=False)
class HandshakeGate:
    """Admission of the Initials arriving on one socket (see the module docstring)."""

    limits: HandshakeLimits = attrs.field(factory=HandshakeLimits)
    _slots: HandshakeSlots = attrs.field(init=False)
    _tokens: QuicRetryTokenHandler = attrs.field(init=False, factory=QuicRetryTokenHandler)
    _retries_sent: int = attrs.field(init=False, default=0)
    _refused: int = attrs.field(init=False, default=0)
    _evicted: int = attrs.field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        self._slots = HandshakeSlots(self.limits)

    def statistics(self) -> HandshakeStatistics:
        """Handshakes now, and what was refused so far."""
        return HandshakeStatistics(
            pending=self._slots.pending,
            unproven=self._slots.unproven,
            retries_sent=self._retries_sent,
            refused=self._refused,
            evicted=self._evicted,
            limits=self.limits,
        )

    async def admit(
        self,
        endpoint: UdpEndpoint,
        header: QuicHeader,
        source: Address,
        evict: Callable[[Hashable], object],
    ) -> Admitted | None:
        """Whether the Initial (its ``header``, from ``source``; see :func:`opens_connection`)
        may start a handshake now: None when it was answered with a Retry (sent on ``endpoint``)
        or dropped. To make room, the handshake of the key given to ``evict`` is ended first
        (its slot is released already)."""
        original_cid = header.destination_cid
        retry_cid: bytes | None = None
        if header.token:
            try:
                original_cid = self._tokens.validate_token(
                    address=source,
                    destination_cid=header.destination_cid,
                    token=header.token,
                    now=trio.current_time(),
                )
            except ValueError as exc:
                logger.debug("Initial from %s refused (token: %s)", source, exc)
                self._refused += 1
                return None
            retry_cid = header.destination_cid
        prefix = source_prefix(source[0])
        admission = self._slots.decide(prefix, proven=retry_cid is not None)
        if admission.verdict is Verdict.RETRY:
            await self._send_retry(endpoint, header, source)
            return None
        if admission.verdict is Verdict.REFUSE:
            logger.debug("Initial from %s refused (its source holds its share)", source)
            self._refused += 1
            return None
        victim = admission.evict
        if victim is not None:
            logger.info("evicting an unproven or oversized handshake for %s", source)
            self._slots.release(victim)
            self._evicted += 1
            evict(victim)
        return Admitted(prefix, original_cid, retry_cid)

    def take(self, key: Hashable, admitted: Admitted) -> None:
        """Record the handshake started (under ``key``) for an ``admitted`` Initial."""
        self._slots.take(key, admitted.source, proven=admitted.proven)

    def release(self, key: Hashable) -> None:
        """``key``'s handshake ended (done, failed or evicted); unknown keys are ignored."""
        self._slots.release(key)

    async def _send_retry(self, endpoint: UdpEndpoint, header: QuicHeader, source: Address) -> None:
        """Answer with a Retry (smaller than the Initial): a real client comes back with the
        token, proving it receives at ``source``; we keep nothing meanwhile."""
        assert header.version is not None  # an Initial's long header carries one
        retry_cid = os.urandom(CID_LENGTH)
        token = self._tokens.create_token(
            address=source,
            original_destination_connection_id=header.destination_cid,
            retry_source_connection_id=retry_cid,
            now=trio.current_time(),
        )
        packet = encode_quic_retry(
            version=header.version,
            source_cid=retry_cid,
            destination_cid=header.source_cid,
            original_destination_cid=header.destination_cid,
            retry_token=token,
        )
        self._retries_sent += 1
        try:
            await endpoint.send_to(packet, source)
        except (OSError, trio.ClosedResourceError) as exc:
            logger.debug("Retry to %s not sent: %s", source, exc)
