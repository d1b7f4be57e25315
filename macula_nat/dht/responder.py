"""Answers to incoming queries (BEP 5, BEP 44), sans-IO: state in, reply out, ``now`` passed.

Writes need a token this node issued to the writer's IP for that target (announce_peer: the
info-hash; put: the item's target). Puts go through `ItemStore`, so bad signatures, stale
``seq`` and ``cas`` mismatches are refused with their BEP 44 codes, and counted.

Amplification (ARCHITECTURE section 10): an answer to an address that has not proven it receives
our packets (`ProvenAddresses`; a valid token in the query proves it too) is at most
``amplification`` times the request's size, measured on the encoded datagrams. To fit, a get
answer drops the value when it does not fit with the token (a mutable one keeps its ``seq``, so
the reader knows to ask again with the token), then answers lose their farthest nodes, then
peers. The token always stays: it is how the address proves itself.
"""

from __future__ import annotations

import logging
import math

import attrs

from macula_nat.net.address import source_prefix

from .compact import Address, NodeInfo, is_ipv6
from .error_code import ErrorCode
from .item_store import OWN_SOURCE, ItemStore, PutRejected
from .krpc import (
    AnnouncePeer,
    Error,
    FindNode,
    Get,
    GetPeers,
    Ping,
    Put,
    Query,
    Response,
    encode,
)
from .mutable_item import Item, MutableItem
from .node_id import NodeId
from .peer_store import PeerStore
from .proven_addresses import ProvenAddresses
from .routing_table import RoutingTable
from .statistics import Counters
from .tokens import WriteTokens

__all__ = ["Responder"]

logger = logging.getLogger(__name__)

_MAX_PEERS = 50
"""Peers per get_peers answer: 50 compact IPv4 peers keep it well under a UDP datagram."""
_KNOWN_WANTS = frozenset((b"n4", b"n6"))
"""BEP 32's ``want`` values; others are ignored (a later BEP may define more)."""


class Responder:
    """Answers queries from one node's routing table and stores."""

    def __init__(
        self,
        *,
        table: RoutingTable,
        items: ItemStore,
        peers: PeerStore,
        tokens: WriteTokens,
        counters: Counters,
        version: bytes | None,
        proven: ProvenAddresses | None = None,
        amplification: float = 3.0,
    ) -> None:
        if not amplification >= 1:
            raise ValueError(f"amplification must be at least 1, not {amplification!r}")
        self.table = table
        self.items = items
        self.peers = peers
        self.tokens = tokens
        self.proven = proven if proven is not None else ProvenAddresses()
        self.amplification = amplification
        self._counters = counters
        self._version = version

    @property
    def own_id(self) -> NodeId:
        return self.table.own_id

    def answer(
        self, query: Query, source: Address, now: float, request_size: int | None = None
    ) -> Response | Error:
        """The reply to ``query`` from ``source``; stores what a valid write carries.

        With ``request_size`` (the datagram's bytes), a response to an unproven address is cut
        to ``amplification`` times it (see the module docstring).
        """
        reply = self._answer(query, source, now)
        if (
            request_size is None
            or not isinstance(reply, Response)
            or self.proven.is_proven(source[0], now)
        ):
            return reply
        return self._fit(reply, math.floor(self.amplification * request_size))

    def _answer(self, query: Query, source: Address, now: float) -> Response | Error:
        if isinstance(query, Ping):
            return self._response(query, source)
        if isinstance(query, FindNode):
            return self._response(
                query, source, nodes=self._nodes(query.target, query, source, now)
            )
        if isinstance(query, GetPeers):
            return self._get_peers(query, source, now)
        if isinstance(query, AnnouncePeer):
            return self._announce(query, source, now)
        if isinstance(query, Get):
            return self._get(query, source, now)
        if isinstance(query, Put):
            return self._put(query, source, now)
        return self._error(query, ErrorCode.METHOD_UNKNOWN)

    def _fit(self, reply: Response, budget: int) -> Response:
        """``reply`` cut to at most ``budget`` encoded bytes, as far as it can be: value first
        unless it fits alone, then the farthest nodes, then the peers; never the token."""
        size = len(encode(reply))
        if size <= budget:
            return reply
        self._counters.trimmed += 1
        if reply.value is not None:
            bare = attrs.evolve(reply, nodes=(), nodes6=(), peers=())
            if len(encode(bare)) > budget:
                mutable = reply.key is not None
                reply = attrs.evolve(
                    reply, value=None, key=None, signature=None, seq=reply.seq if mutable else None
                )
                size = len(encode(reply))
        # Each pass drops at least what the excess takes (lengths only shrink as items go), so
        # this ends within one pass per field in practice, and is bounded by the items anyway.
        for _ in range(len(reply.all_nodes) + len(reply.peers) + 1):
            excess = size - budget
            if excess <= 0:
                break
            if reply.nodes6:
                keep = max(0, len(reply.nodes6) - math.ceil(excess / 38))
                reply = attrs.evolve(reply, nodes6=reply.nodes6[:keep])
            elif reply.nodes:
                keep = max(0, len(reply.nodes) - math.ceil(excess / 26))
                reply = attrs.evolve(reply, nodes=reply.nodes[:keep])
            elif reply.peers:
                width = 21 if is_ipv6(reply.peers[0]) else 8
                keep = max(0, len(reply.peers) - math.ceil(excess / width))
                reply = attrs.evolve(reply, peers=reply.peers[:keep])
            else:
                break  # the bare answer: the floor (ids, token, version) is a few dozen bytes
            size = len(encode(reply))
        return reply

    def _nodes(
        self, target: NodeId, query: Query, source: Address, now: float
    ) -> tuple[NodeInfo, ...]:
        """The good nodes nearest ``target`` of each family the query wants (BEP 32: ``n4``
        for ``nodes``, ``n6`` for ``nodes6``), else of the source's family; up to k each."""
        want = getattr(query, "want", ())
        families = {item == b"n6" for item in want if item in _KNOWN_WANTS}
        if not families:
            families = {is_ipv6(source)}
        table = self.table
        return tuple(
            n for ipv6 in sorted(families) for n in table.closest_good(target, now, ipv6=ipv6)
        )

    def _response(
        self,
        query: Query,
        source: Address,
        *,
        nodes: tuple[NodeInfo, ...] = (),
        token: bytes | None = None,
        peers: tuple[Address, ...] = (),
        item: Item | None = None,
        seq: int | None = None,
    ) -> Response:
        mutable = item if isinstance(item, MutableItem) else None
        return Response(
            transaction_id=query.transaction_id,
            sender=self.own_id,
            version=self._version,
            requester=source,
            nodes=tuple(n for n in nodes if not n.is_ipv6),
            nodes6=tuple(n for n in nodes if n.is_ipv6),
            token=token,
            peers=peers,
            value=None if item is None else item.value,
            key=None if mutable is None else mutable.public_key,
            signature=None if mutable is None else mutable.signature,
            seq=seq if mutable is None else mutable.seq,
        )

    def _error(self, query: Query, code: ErrorCode, message: str | None = None) -> Error:
        return Error(
            transaction_id=query.transaction_id,
            code=int(code),
            message=code.phrase if message is None else message,
            version=self._version,
        )

    def _get_peers(self, query: GetPeers, source: Address, now: float) -> Response:
        ipv6 = is_ipv6(source)
        peers = [
            p for p in self.peers.peers(query.info_hash, now, _MAX_PEERS) if is_ipv6(p) is ipv6
        ]
        return self._response(
            query,
            source,
            nodes=self._nodes(query.info_hash, query, source, now),
            token=self.tokens.issue(source[0], query.info_hash, now),
            peers=tuple(peers),
        )

    def _announce(self, query: AnnouncePeer, source: Address, now: float) -> Response | Error:
        if not self.tokens.verify(query.token, source[0], query.info_hash, now):
            self._counters.bad_tokens += 1
            return self._error(query, ErrorCode.PROTOCOL, "bad token")
        self.proven.prove(source[0], now)
        port = source[1] if query.implied_port else query.port
        if port == 0:
            return self._error(query, ErrorCode.PROTOCOL, "port 0")
        if not self.peers.announce(query.info_hash, (source[0], port), now):
            return self._error(query, ErrorCode.SERVER, "peer table full")
        return self._response(query, source)

    def _get(self, query: Get, source: Address, now: float) -> Response:
        if query.token is not None and self.tokens.verify(
            query.token, source[0], query.target, now
        ):
            self.proven.prove(source[0], now)
        nodes = self._nodes(query.target, query, source, now)
        token = self.tokens.issue(source[0], query.target, now)
        item = self.items.get(query.target, now)
        if isinstance(item, MutableItem) and query.seq is not None and item.seq <= query.seq:
            # BEP 44: nothing newer than what the reader has; say which seq we hold.
            return self._response(query, source, nodes=nodes, token=token, seq=item.seq)
        return self._response(query, source, nodes=nodes, token=token, item=item)

    def _put(self, query: Put, source: Address, now: float) -> Response | Error:
        target = query.item.target
        if not self.tokens.verify(query.token, source[0], target, now):
            self._counters.bad_tokens += 1
            return self._error(query, ErrorCode.PROTOCOL, "bad token")
        self.proven.prove(source[0], now)
        try:
            self.store(query.item, now, cas=query.cas, source=source_prefix(source[0]))
        except PutRejected as rejected:
            logger.debug("refused a put to %s from %s: %s", target, source, rejected)
            return self._error(query, rejected.code, rejected.message)
        return self._response(query, source)

    def store(
        self, item: Item, now: float, *, cas: int | None = None, source: str = OWN_SOURCE
    ) -> None:
        """Store ``item`` here (a peer's put, charged to its `source_prefix`, or our own when
        we are among the nearest); `PutRejected` is counted by reason and re-raised."""
        try:
            self.items.put(item, now, cas=cas, source=source)
        except PutRejected as rejected:
            if rejected.code is ErrorCode.INVALID_SIGNATURE:
                self._counters.bad_signatures += 1
            elif rejected.code is ErrorCode.SEQUENCE_TOO_OLD:
                self._counters.stale_seqs += 1
            elif rejected.code is ErrorCode.CAS_MISMATCH:
                self._counters.cas_mismatches += 1
            raise
