"""A Mainline DHT node (BEP 5, 43, 44) on its own UDP socket, served by an actor.

`DhtNode` is the handle users hold. It owns what must outlive a crash: the routing table, the
items and peers stored for others, our own items and announcements (republished before they
expire), the transaction table and the counters. `DhtServer`, its actor, owns the socket: it
binds it (a restart rebinds the same port, so other nodes' tables stay right), answers queries
as they arrive and runs maintenance (pings, bucket refresh, expiry, republish).

Operations (`DhtNode.find_node`, `get`, `put`, `get_peers`, `announce_peer`) run in the
caller's task, so a slow lookup never holds the server's mailbox and cancelling it is the usual
Trio cancellation; they send through the server's socket and fail with ``NoProc`` when no server
runs. Every lookup is bounded in queries and in time.

Incoming datagrams: a response or error counts only when it matches a query of ours by
transaction id and source address. Everything else is charged to its source's token bucket
first (an IPv4 address, or an IPv6 /64: one host's share); over the limit it is dropped.
Malformed KRPC is counted (and answered with an error when that never amplifies); queries are
answered by `Responder`, unless the node is read-only (BEP 43), which answers nothing and sends
``ro=1`` with its own queries.
"""

from __future__ import annotations

import ipaddress
import logging
import random
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, Final

import attrs
import trio

from macula_nat.actors import Actor, ActorRef, ChildSpec, NoProc, open_actor
from macula_nat.nat.rate_limit import TokenBuckets
from macula_nat.net.address import ip_version, source_prefix
from macula_nat.net.endpoint import UdpEndpoint, UdpStack
from macula_nat.net.rtt import RttEstimate

from .bootstrap import resolve_hosts
from .compact import Address, NodeInfo
from .config import DhtConfig
from .driver import GetResult, LookupResult, PeersResult, PutResult, result_of, run_lookup
from .error_code import ErrorCode
from .item_store import ItemStore, PutRejected
from .krpc import (
    AnnouncePeer,
    Error,
    FindNode,
    Get,
    GetPeers,
    MalformedMessage,
    Message,
    Ping,
    Put,
    Query,
    Response,
    decode,
    encode,
)
from .lookup import Lookup
from .mutable_item import ImmutableItem, Item, MutableItem
from .node_id import NodeId
from .peer_store import PeerStore
from .proven_addresses import ProvenAddresses
from .responder import Responder
from .routing_table import Outcome, RoutingTable
from .secure_id import is_secure, secure_node_id
from .statistics import Counters, DhtLimits, DhtStatistics
from .tokens import WriteTokens
from .transactions import Transactions

__all__ = ["DhtNode", "DhtServer", "open_dht_node"]

logger = logging.getLogger(__name__)

_MAX_BOOTSTRAP: Final = 32
"""Bootstrap addresses pinged at once, at most."""
_MAX_VERIFYING: Final = 32
"""Pings in flight to verify nodes that queried us, at most."""
_MAX_REFRESHES: Final = 4
"""Bucket refresh lookups per maintenance round, at most."""
_MAX_REPUBLISH: Final = 64
"""Own items or announcements republished per maintenance round, at most: 960 announcements
every 15 minutes, more than a relay announced in its region in all 512 shards needs (577)."""
_REPUBLISH_AT_ONCE: Final = 4
"""Republications run this many at a time (each is a lookup and its stores)."""
_MAX_PEERS: Final = 1000
"""Peers one get_peers lookup collects, at most."""
_MIN_SLOW: Final = 0.05
"""The shortest wait before a lookup moves on past a silent node, whatever the round trips
measured (answers on loopback take microseconds; a busy node a little longer)."""


@attrs.define
class _Own:
    """Something of ours kept alive in the DHT: an item, or an announcement (port or None)."""

    what: Item | int | None
    last: float
    until: float


class DhtNode:
    """A DHT node's state and operations; run it with `child_spec` or `open_dht_node`.

    Construct it inside ``trio.run`` (its routing table starts at the current Trio time).
    ``node_id`` defaults to a random one; ``rng`` picks bucket refresh targets.

    ``storage``: a node of the other IP version on the same host whose items and announcements
    this one serves too (and whose id it takes unless ``node_id`` is given): BEP 32's one node
    in both swarms, each swarm with its own routing table, so that what is stored through one
    version is found through the other (a dual-stack gateway runs its DHT so).
    """

    def __init__(
        self,
        stack: UdpStack,
        config: DhtConfig | None = None,
        *,
        node_id: NodeId | None = None,
        rng: random.Random | None = None,
        storage: DhtNode | None = None,
    ) -> None:
        self.stack = stack
        self.config = config = config if config is not None else DhtConfig()
        self._rng = rng if rng is not None else random.Random()
        if storage is not None:
            if ip_version(storage.config.listen[0]) == ip_version(config.listen[0]):
                raise ValueError(f"{storage} shares its storage only with the other IP version")
            node_id = storage.node_id if node_id is None else node_id
        self._id = node_id if node_id is not None else _own_id(config, rng)
        now = trio.current_time()
        self._table = RoutingTable(
            self._id, now, k=config.k, refresh_interval=config.refresh_interval
        )
        self._counters = Counters()
        shared: Responder | None = storage._responder if storage is not None else None
        self._responder: Responder = Responder(
            table=self._table,
            items=shared.items
            if shared is not None
            else ItemStore(
                lifetime=config.item_lifetime,
                capacity=config.max_items,
                per_source=config.max_items_per_source,
            ),
            peers=shared.peers
            if shared is not None
            else PeerStore(
                lifetime=config.peer_lifetime,
                max_peers=config.max_peers_per_info_hash,
                max_info_hashes=config.max_info_hashes,
                per_source=config.max_announces_per_source,
            ),
            tokens=shared.tokens if shared is not None else WriteTokens(),
            counters=self._counters,
            version=config.version,
            proven=ProvenAddresses(capacity=config.proven_addresses),
            amplification=config.amplification,
        )
        self._transactions = Transactions(config.max_outstanding)
        self._read_only = bool(config.read_only)
        self._rtt: RttEstimate | None = None
        """Round trips of all this node's queries: with the table's variation, how long a lookup
        waits for a contact whose own round trips the routing table has not measured."""
        self._limiter = TokenBuckets(
            config.query_rate, config.query_burst, config.rate_limit_sources
        )
        self._own_items: dict[NodeId, _Own] = {}
        self._own_announces: dict[NodeId, _Own] = {}
        self._verifying: set[NodeId] = set()
        self._server: ActorRef | None = None
        self._endpoint: UdpEndpoint | None = None
        self._address: Address | None = None
        self._spawn: Callable[..., None] | None = None

    def __repr__(self) -> str:
        return f"<DhtNode {str(self._id)[:12]} {self._address}>"

    @property
    def node_id(self) -> NodeId:
        return self._id

    @property
    def address(self) -> Address | None:
        """The socket's address (None before the first start); restarts keep it."""
        return self._address

    @property
    def server(self) -> ActorRef | None:
        """The server's latest incarnation."""
        return self._server

    @property
    def routing_table(self) -> RoutingTable:
        return self._table

    @property
    def contact(self) -> NodeInfo:
        """This node as others reach it (its socket address; unspecified IPs are not usable)."""
        if self._address is None:
            raise NoProc(f"{self} has never run")
        return NodeInfo(self._id, self._address)

    @property
    def read_only(self) -> bool:
        """Whether the node is read-only now (BEP 43): it answers nothing, sends ``ro=1``."""
        return self._read_only

    def set_read_only(self, read_only: bool) -> None:
        """Make the node read-only, or a full node that answers queries and may be kept in
        others' tables; ``DhtConfig.read_only`` True or False is kept whatever is asked. The
        state belongs to the node, so a server restart keeps it."""
        if self.config.read_only is not None or read_only == self._read_only:
            return
        self._read_only = read_only
        logger.info("%s: now %s", self, "read-only (BEP 43)" if read_only else "a full node")

    def child_spec(self, id: str = "dht", *, name: str | None = None) -> ChildSpec:
        """The node's server, for a supervisor; every restart serves the same state."""
        return ChildSpec(id, DhtServer, (self,), name=name)

    def statistics(self) -> DhtStatistics:
        now = trio.current_time()
        c = self._counters
        config = self.config
        items, peers = self._responder.items, self._responder.peers
        items.expire(now)
        return DhtStatistics(
            limits=DhtLimits(
                query_rate=config.query_rate,
                query_burst=config.query_burst,
                rate_limit_sources=config.rate_limit_sources,
                amplification=config.amplification,
                proven_addresses=config.proven_addresses,
                max_items=config.max_items,
                max_items_per_source=config.max_items_per_source,
                max_info_hashes=config.max_info_hashes,
                max_peers_per_info_hash=config.max_peers_per_info_hash,
                max_announces_per_source=config.max_announces_per_source,
            ),
            proven_addresses=len(self._responder.proven),
            nodes=len(self._table),
            items=len(items),
            item_sources=items.sources,
            largest_item_holding=items.largest_holding,
            info_hashes=len(peers),
            announcements=peers.announcements,
            peer_sources=peers.sources,
            largest_peer_holding=peers.largest_holding,
            refused_info_hashes=peers.refused,
            own_items=len(self._own_items),
            in_flight=len(self._transactions),
            read_only=self._read_only,
            **attrs.asdict(c),
        )

    # -- operations ------------------------------------------------------------------------------

    async def ping(self, address: Address) -> NodeId | None:
        """The id of the node at ``address``, or None if it did not answer."""
        self._check_running()
        reply = await self._query(address, Ping(**self._fields()))
        return reply.sender if isinstance(reply, Response) else None

    async def bootstrap(self, addresses: Iterable[tuple[str, int]] | None = None) -> int:
        """Ping ``addresses`` (default: the configured hosts; names resolved with the
        configured resolver, only addresses of our socket's IP version kept), then look our
        own id up, which fills the buckets near us. Returns how many nodes the routing table
        then holds."""
        self._check_running()
        hosts = self.config.bootstrap if addresses is None else addresses
        family = ip_version(self._bind_address()[0])
        resolved = await resolve_hosts(hosts, self.config.resolver, family=family)
        chosen = resolved[:_MAX_BOOTSTRAP]
        async with trio.open_nursery() as nursery:
            for address in chosen:
                nursery.start_soon(self.ping, address)
        if len(self._table):
            await self.find_node(self._id)
        return len(self._table)

    async def find_node(self, target: NodeId) -> LookupResult:
        """The k nodes nearest ``target`` that answered (BEP 5 find_node, iteratively)."""

        def query() -> Query:
            return FindNode(target=target, **self._fields())

        return await self._lookup(target, query, _ignore)

    async def get_peers(self, info_hash: NodeId) -> PeersResult:
        """Peers announced under ``info_hash`` by the nodes nearest it, this one included (it
        may be one of them: its own store answers others, so it answers us too)."""
        local = self._responder.peers.peers(info_hash, trio.current_time(), _MAX_PEERS)
        peers: dict[Address, None] = dict.fromkeys(local)

        def query() -> Query:
            return GetPeers(info_hash=info_hash, **self._fields())

        def collect(_: NodeInfo, response: Response) -> None:
            for peer in response.peers:
                if len(peers) < _MAX_PEERS:
                    peers[peer] = None

        result = await self._lookup(info_hash, query, collect)
        return PeersResult(tuple(peers), result)

    async def announce_peer(
        self,
        info_hash: NodeId,
        port: int | None = None,
        *,
        republish_until: float | None = None,
    ) -> PutResult:
        """Announce us as a peer of ``info_hash`` to the k nodes nearest it; ``port`` None
        means the port of the DHT socket itself (``implied_port``). ``republish_until`` (a Trio
        time; ``math.inf``: for ever) repeats it before it expires until then, or until
        `stop_republishing`."""
        tokens: dict[NodeId, bytes] = {}

        def query() -> Query:
            return GetPeers(info_hash=info_hash, **self._fields())

        result = await self._lookup(info_hash, query, _tokens_into(tokens))

        def write(token: bytes) -> Query:
            return AnnouncePeer(
                info_hash=info_hash,
                port=port or 0,
                implied_port=port is None,
                token=token,
                **self._fields(),
            )

        def store_here(now: float) -> None:
            assert self._address is not None  # _among_nearest checked it
            peer = (self._address[0], port or self._address[1])
            if not self._responder.peers.announce(info_hash, peer, now):
                raise PutRejected(ErrorCode.SERVER, "peer table full")

        outcome = await self._write(info_hash, result, tokens, write, store_here)
        if republish_until is not None:
            self._own_announces[info_hash] = _Own(port, trio.current_time(), republish_until)
        return outcome

    async def get(self, target: NodeId, *, salt: bytes = b"", seq: int | None = None) -> GetResult:
        """The newest item under ``target`` (BEP 44 get): a mutable one whose signature and
        target check out (``salt``: the one it was stored with), or an immutable one whose hash
        is ``target``. With ``seq``, nodes holding nothing newer send no value."""
        here = self._responder.items.get(target, trio.current_time())
        if isinstance(here, MutableItem) and (
            here.salt != salt or (seq is not None and here.seq <= seq)
        ):
            here = None  # stored with another salt, or not newer than what the caller has
        best: list[Item] = [] if here is None else [here]
        withheld: dict[NodeId, tuple[NodeInfo, bytes, int | None]] = {}
        """Nodes that answered with a token and no value: maybe one too large for an address
        they had not seen prove itself (a mutable one's ``seq`` comes along)."""

        def query() -> Query:
            return Get(target=target, seq=seq, **self._fields())

        def collect(node: NodeInfo, response: Response) -> None:
            item = self._verified_item(response, target, salt)
            if item is None:
                if response.token is not None and response.value is None:
                    withheld[node.node_id] = (node, response.token, response.seq)
                return
            withheld.pop(node.node_id, None)
            if not best:
                best.append(item)
            elif (
                isinstance(item, MutableItem)
                and isinstance(best[0], MutableItem)
                and item.seq > best[0].seq
            ):
                best[0] = item

        result = await self._lookup(target, query, collect)
        again = self._ask_again(target, best[0] if best else None, seq, withheld)
        if again:
            # One more round trip, only for what was held back: now with each node's token.
            async def ask(node: NodeInfo, token: bytes) -> None:
                get = Get(target=target, seq=seq, token=token, **self._fields())
                reply = await self._query(node.address, get, node.node_id)
                if isinstance(reply, Response):
                    collect(node, reply)

            with trio.move_on_after(self.config.operation_timeout):
                async with trio.open_nursery() as nursery:
                    for node, token in again:
                        nursery.start_soon(ask, node, token)
        return GetResult(best[0] if best else None, result)

    def _ask_again(
        self,
        target: NodeId,
        best: Item | None,
        seq: int | None,
        withheld: dict[NodeId, tuple[NodeInfo, bytes, int | None]],
    ) -> list[tuple[NodeInfo, bytes]]:
        """The nodes (nearest first, k at most) to ask again with their token: all that sent
        no value when nothing was found, else those saying they hold a newer seq."""
        newest = best.seq if isinstance(best, MutableItem) else seq
        chosen = [
            (node, token)
            for node, token, held in withheld.values()
            if (best is None and (held is None or newest is None or held > newest))
            or (held is not None and newest is not None and held > newest)
        ]
        chosen.sort(key=lambda pair: pair[0].node_id.distance(target))
        return chosen[: self.config.k]

    async def put(
        self, item: Item, *, cas: int | None = None, republish_until: float | None = None
    ) -> PutResult:
        """Store ``item`` on the k nodes nearest its target (BEP 44 put, after a get for their
        tokens). ``cas``: only where the stored seq is that one. ``republish_until`` (a Trio
        time; ``math.inf``: for ever) puts it again before it expires until then, or until
        `stop_republishing` or a put of another item under the same target."""
        if isinstance(item, MutableItem) and not item.verify():
            raise ValueError("refusing to put a mutable item whose signature does not verify")
        target = item.target
        tokens: dict[NodeId, bytes] = {}

        def query() -> Query:
            return Get(target=target, **self._fields())

        result = await self._lookup(target, query, _tokens_into(tokens))

        def write(token: bytes) -> Query:
            return Put(token=token, item=item, cas=cas, **self._fields())

        def store_here(now: float) -> None:
            self._responder.store(item, now, cas=cas)

        outcome = await self._write(target, result, tokens, write, store_here)
        if republish_until is not None:
            self._own_items[target] = _Own(item, trio.current_time(), republish_until)
        elif target in self._own_items and self._own_items[target].what != item:
            del self._own_items[target]
        return outcome

    def stop_republishing(self, target: NodeId) -> bool:
        """Stop keeping our item or announcement under ``target`` alive; False if none."""
        item = self._own_items.pop(target, None)
        announce = self._own_announces.pop(target, None)
        return item is not None or announce is not None

    # -- lookups and writes ----------------------------------------------------------------------

    def _slow_after(self, contact: NodeInfo) -> float:
        """How long a lookup waits on a silent ``contact`` before moving on, within
        [`_MIN_SLOW`, the query timeout]: the RTO of the round trips measured to it when the
        routing table has some, so a near node that went silent is passed after its own few
        round trips, not after the RTO of contacts across the world, and a far one is not given
        up on at the near ones' pace. A contact never measured (most of those first heard of
        in the lookup) is taken to be as far as this node's contacts are on average: the
        smoothed round trip of all its queries plus four times how much one contact's round
        trips vary (`RoutingTable.variation`), or the node-wide RTO if that is shorter (when
        contacts are all alike); the node-wide RTO's variation is mostly the spread between
        near and far contacts, so it waits for the farthest. A farther one turns slow and frees
        its slot, and its answer still counts. 1 s before any answer."""
        ceiling = self.config.query_timeout
        floor = min(_MIN_SLOW, ceiling)
        measured = self._table.round_trips(contact)
        if measured is not None:
            return measured.rto(floor=floor, ceiling=ceiling)
        if self._rtt is None:
            return min(1.0, ceiling)
        node_wide = self._rtt.rto(floor=floor, ceiling=ceiling)
        variation = self._table.variation
        if variation is None:
            return node_wide
        typical = RttEstimate(self._rtt.srtt, variation)
        return min(node_wide, typical.rto(floor=floor, ceiling=ceiling))

    async def _lookup(
        self,
        target: NodeId,
        query: Callable[[], Query],
        collect: Callable[[NodeInfo, Response], None],
    ) -> LookupResult:
        self._check_running()
        self._counters.lookups += 1
        seeds = self._table.closest(target)
        if not seeds and self.config.bootstrap:
            await self.bootstrap()
            seeds = self._table.closest(target)
        lookup = Lookup(
            target,
            seeds,
            k=self.config.k,
            alpha=self.config.alpha,
            slow_after=self._slow_after,
            exclude=self._id,
        )

        async def ask(node: NodeInfo) -> Response | None:
            reply = await self._query(node.address, query(), node.node_id)
            if not isinstance(reply, Response):
                return None
            collect(node, reply)
            return reply

        with trio.move_on_after(self.config.operation_timeout):
            return await run_lookup(lookup, ask, self.config.max_lookup_queries)
        return result_of(lookup)

    async def _write(
        self,
        target: NodeId,
        result: LookupResult,
        tokens: dict[NodeId, bytes],
        write: Callable[[bytes], Query],
        store_here: Callable[[float], None],
    ) -> PutResult:
        """Send ``write(token)`` to each of the nearest nodes that gave us a token, and keep it
        here too when this node is one of the k nearest (a lone gateway is its own storage).
        ``store_here`` raises `PutRejected` as a remote node would answer an error."""
        targets = [node for node in result.nodes if node.node_id in tokens][: self.config.k]
        stored = 0
        errors: list[int] = []
        if self._among_nearest(target, targets):
            try:
                store_here(trio.current_time())
                stored += 1
            except PutRejected as exc:
                errors.append(exc.code)

        async def one(node: NodeInfo) -> None:
            nonlocal stored
            reply = await self._query(node.address, write(tokens[node.node_id]), node.node_id)
            if isinstance(reply, Response):
                stored += 1
            elif isinstance(reply, Error):
                errors.append(reply.code)

        with trio.move_on_after(self.config.operation_timeout):
            async with trio.open_nursery() as nursery:
                for node in targets:
                    nursery.start_soon(one, node)
        return PutResult(stored, tuple(errors), result)

    def _among_nearest(self, target: NodeId, nearest: list[NodeInfo]) -> bool:
        """Whether this node is one of the k nodes nearest ``target`` (read-only nodes store
        nothing for anyone, themselves included)."""
        if self._read_only or self._address is None:
            return False
        if len(nearest) < self.config.k:
            return True
        farthest = max(node.node_id.distance(target) for node in nearest)
        return self._id.distance(target) < farthest

    def _verified_item(self, response: Response, target: NodeId, salt: bytes) -> Item | None:
        """The item in a get response if it really belongs under ``target``; counts forgeries."""
        if response.key is not None:
            mutable = response.mutable_item(salt)
            if mutable is None or mutable.target != target or not mutable.verify():
                self._counters.bad_signatures += 1
                return None
            return mutable
        immutable = response.immutable_item()
        if immutable is None:
            return None
        if immutable.target != target:
            self._counters.bad_signatures += 1
            return None
        return immutable

    # -- queries ---------------------------------------------------------------------------------

    def _fields(self) -> dict[str, Any]:
        """What every query of ours carries; the transaction id is set when it is sent."""
        return {
            "transaction_id": b"",
            "sender": self._id,
            "read_only": self._read_only,
            "version": self.config.version,
        }

    async def _query(
        self, address: Address, query: Query, expect: NodeId | None = None
    ) -> Response | Error | None:
        """Send ``query`` and wait for its answer; None after ``query_timeout`` (which counts
        against ``expect`` in the routing table)."""
        slot = self._transactions.open(address)
        if slot is None:
            self._counters.overloaded += 1
            await trio.lowlevel.checkpoint()
            return None
        tid, pending = slot
        self._counters.queries_sent += 1
        try:
            if await self._send(attrs.evolve(query, transaction_id=tid), address):
                sent = trio.current_time()
                with trio.move_on_after(self.config.query_timeout):
                    answer = await pending.wait()
                    elapsed = trio.current_time() - sent
                    if answer is not None:  # None: abandoned as the socket went
                        self._rtt = (
                            RttEstimate.first(elapsed)
                            if self._rtt is None
                            else self._rtt.updated(elapsed)
                        )
                    if isinstance(answer, Response):
                        self._table.on_round_trip(NodeInfo(answer.sender, address), elapsed)
        finally:
            self._transactions.close(tid, address)
        reply = pending.reply
        if reply is None:
            self._counters.timeouts += 1
            if expect is not None:
                self._table.on_failure(expect, trio.current_time())
        return reply

    async def _send(self, message: Message, address: Address) -> bool:
        endpoint = self._endpoint
        if endpoint is None:
            self._counters.send_failures += 1
            await trio.lowlevel.checkpoint()
            return False
        try:
            await endpoint.send_to(encode(message), address)
        except (OSError, ValueError, trio.ClosedResourceError) as exc:
            self._counters.send_failures += 1
            logger.debug("%s: nothing sent to %s: %s", self, address, exc)
            return False
        return True

    def _check_running(self) -> None:
        if self._endpoint is None:
            raise NoProc(f"{self} has no server running")

    # -- incoming datagrams ----------------------------------------------------------------------

    def _on_datagram(self, data: bytes, source: Address) -> Message | None:
        """Handle one datagram; the reply to send back, if any."""
        now = trio.current_time()
        counters = self._counters
        try:
            message = decode(data)
        except MalformedMessage as exc:
            if not self._limiter.allow(source_prefix(source[0]), now):
                counters.rate_limited += 1
                return None
            counters.malformed += 1
            if exc.code is ErrorCode.MESSAGE_TOO_BIG:
                counters.oversized += 1
            logger.debug("%s: malformed datagram from %s: %s", self, source, exc.reason)
            reply = None if self._read_only else exc.error_reply()
            if reply is not None:
                counters.errors_sent += 1
            return reply
        if isinstance(message, Response | Error):
            if self._transactions.resolve(message.transaction_id, source, message):
                if isinstance(message, Response):
                    counters.responses_received += 1
                    self._check_id(message.sender, source)
                    self._table.on_response(NodeInfo(message.sender, source), now)
                    # It echoed a random transaction id sent only to it: a round trip.
                    self._responder.proven.prove(source[0], now)
                else:
                    counters.errors_received += 1
                return None
            if not self._limiter.allow(source_prefix(source[0]), now):
                counters.rate_limited += 1
            else:
                counters.unsolicited += 1
            return None
        if not self._limiter.allow(source_prefix(source[0]), now):
            counters.rate_limited += 1
            return None
        if self._read_only:
            counters.ignored_read_only += 1
            return None
        counters.queries_received += 1
        self._check_id(message.sender, source)
        sender = NodeInfo(message.sender, source)
        if self._table.on_query(sender, now, read_only=message.read_only) is Outcome.ADDED:
            self._verify_soon(sender)
        answer = self._responder.answer(message, source, now, len(data))
        if isinstance(answer, Response):
            counters.responses_sent += 1
        else:
            counters.errors_sent += 1
        return answer

    def _check_id(self, node_id: NodeId, source: Address) -> None:
        """Count an id BEP 42 does not allow at ``source`` (lenient: the node is kept)."""
        if not is_secure(node_id, source[0]):
            self._counters.insecure_ids += 1

    def _verify_soon(self, node: NodeInfo) -> None:
        """Ping a node that queried us, so it can turn good (answer our queries, BEP 5)."""
        if self._spawn is None or len(self._verifying) >= _MAX_VERIFYING:
            return
        self._verifying.add(node.node_id)
        self._spawn(self._verify, node)

    async def _verify(self, node: NodeInfo) -> None:
        try:
            await self._query(node.address, Ping(**self._fields()), node.node_id)
        finally:
            self._verifying.discard(node.node_id)

    # -- maintenance -----------------------------------------------------------------------------

    async def _maintain(self) -> None:
        """One maintenance round: expiry, pings, refresh, rejoin, republish. Bounded."""
        now = trio.current_time()
        self._responder.items.expire(now)
        self._responder.peers.expire(now)
        pings = self._table.nodes_to_ping(now)[: self.config.pings_per_round]
        async with trio.open_nursery() as nursery:
            for node in pings:
                nursery.start_soon(self._query, node.address, Ping(**self._fields()), node.node_id)
        if not len(self._table) and self.config.bootstrap:
            await self.bootstrap()
        for target in self._table.refresh_targets(now, self._rng)[:_MAX_REFRESHES]:
            await self.find_node(target)
        await self._republish()

    async def _republish(self) -> None:
        now = trio.current_time()
        for kept in (self._own_items, self._own_announces):
            for target in [t for t, o in kept.items() if o.until <= now]:
                del kept[target]
        interval = self.config.republish_interval
        due_items = [(t, o) for t, o in self._own_items.items() if now - o.last >= interval]
        announce_every = min(interval, self.config.peer_lifetime / 2)
        due_announces = [
            (t, o) for t, o in self._own_announces.items() if now - o.last >= announce_every
        ]
        limiter = trio.CapacityLimiter(_REPUBLISH_AT_ONCE)

        async def put(own: _Own) -> None:
            if isinstance(own.what, MutableItem | ImmutableItem):
                async with limiter:
                    await self.put(own.what, republish_until=own.until)
                self._counters.republished += 1

        async def announce(info_hash: NodeId, own: _Own) -> None:
            port = own.what if isinstance(own.what, int) else None
            async with limiter:
                await self.announce_peer(info_hash, port, republish_until=own.until)
            self._counters.republished += 1

        async with trio.open_nursery() as nursery:
            for _, own in due_items[:_MAX_REPUBLISH]:
                nursery.start_soon(put, own)
            for info_hash, own in due_announces[:_MAX_REPUBLISH]:
                nursery.start_soon(announce, info_hash, own)

    # -- for the server --------------------------------------------------------------------------

    def _attach(self, server: DhtServer, endpoint: UdpEndpoint) -> None:
        current = self._server
        if current is not None and current.alive and current is not server.ref:
            raise RuntimeError(f"{self} is already served by {current}")
        self._server = server.ref
        self._endpoint = endpoint
        self._address = endpoint.local_address
        self._spawn = server.start_soon
        self._verifying.clear()

    def _detach(self, server: ActorRef) -> None:
        if self._server is not server:
            return
        endpoint, self._endpoint, self._spawn = self._endpoint, None, None
        self._transactions.abandon_all()
        if endpoint is not None:
            endpoint.close()

    def _bind_address(self) -> Address:
        return self._address if self._address is not None else self.config.listen


def _own_id(config: DhtConfig, rng: random.Random | None) -> NodeId:
    """BEP 42's id for the external IP (configured, or the listen address if public), else
    a random one (behind a NAT, before the external IP is known)."""
    ip = config.external_ip
    if ip is None and ipaddress.ip_address(config.listen[0]).is_global:
        ip = config.listen[0]
    return secure_node_id(ip, rng) if ip is not None else NodeId.random(rng)


def _ignore(_: NodeInfo, __: Response) -> None:
    return None


def _tokens_into(tokens: dict[NodeId, bytes]) -> Callable[[NodeInfo, Response], None]:
    def collect(node: NodeInfo, response: Response) -> None:
        if response.token is not None:
            tokens[node.node_id] = response.token

    return collect


class DhtServer(Actor):
    """The actor serving a `DhtNode`: its socket, incoming queries and maintenance."""

    def __init__(self, node: DhtNode) -> None:
        self._node = node

    async def init(self) -> None:
        node = self._node
        endpoint = await node.stack.bind(node._bind_address())
        node._attach(self, endpoint)
        self.start_soon(self._receive, endpoint)
        self.start_soon(self._maintenance)
        logger.info("%s serving on %s", node, endpoint.local_address)

    async def terminate(self, reason: object) -> None:
        self._node._detach(self.ref)

    async def _receive(self, endpoint: UdpEndpoint) -> None:
        node = self._node
        try:
            while True:
                try:
                    data, source = await endpoint.receive_from()
                except trio.ClosedResourceError:
                    if node._endpoint is not endpoint:
                        return  # detached: this incarnation is stopping
                    raise
                reply = node._on_datagram(data, source)
                if reply is not None:
                    await node._send(reply, source)
        finally:
            node._detach(self.ref)

    async def _maintenance(self) -> None:
        node = self._node
        try:
            if not len(node.routing_table) and node.config.bootstrap:
                await node.bootstrap()
            while True:
                await trio.sleep(node.config.maintenance_interval)
                await node._maintain()
        except NoProc:
            # ``terminate`` detached the node mid-round (its abandoned queries returned):
            # this incarnation is stopping, and the round has nothing left to run on.
            if node._endpoint is not None:
                raise


@asynccontextmanager
async def open_dht_node(
    stack: UdpStack,
    config: DhtConfig | None = None,
    *,
    node_id: NodeId | None = None,
    rng: random.Random | None = None,
    storage: DhtNode | None = None,
) -> AsyncIterator[DhtNode]:
    """Run a DHT node (unsupervised) for the duration of the block."""
    node = DhtNode(stack, config, node_id=node_id, rng=rng, storage=storage)
    async with open_actor(DhtServer(node)):
        yield node
