"""Puncher: hole punching and direct-path liveness for one node's connections.

Every connection gets a :class:`Punch`. The initiator runs DCUtR rounds over the connection's
signalling stream: an :class:`~.punch_wire.Offer` (candidates, predicted ports, profile, link id
and a fresh probe key), the responder's :class:`~.punch_wire.Answer`, then ``Sync``; the
initiator waits half the measured round trip so both sides send at once, and each probes every
candidate of the other its socket can reach, IPv6 ones first (:mod:`.happy_eyeballs`).
Predicted ports go first, so two sequential NATs allocate their next ports to matching pairs of
destinations. When the plan over both profiles calls for a birthday
punch, the random-port side opens ``birthday_sockets`` sockets, each sending to the other side,
while the other side probes ``birthday_probes`` random ports of its public IP, both within
``birthday_rate``.

The first address proven both ways (:class:`~.prover.PathProver`) carries the connection
(:meth:`~macula_nat.connection.link.PeerLink.use_direct`). Each side then checks the path every
``consent_interval``; unanswered for ``consent_timeout``, the link falls back to the relay and the
initiator punches again after ``retry_interval``. A fresh probe from a new address of the peer
(a NAT rebinding) is probed back and, once it answers, followed. Probes are answered (an ACK of
the probe's size, and a probe back) within ``probe_answer_rate`` per source IP (IPv6: /64); a
replayed probe gets no answer at all (:mod:`.prover`).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import random
from collections.abc import Awaitable, Callable, Sequence

import attrs
import trio

from macula_nat.connection import Connection, ConnectionFailed
from macula_nat.connection.link import ConnectionMethod, DirectPath, PeerLink
from macula_nat.identity import NodeId
from macula_nat.nat.profile import NatProfile
from macula_nat.nat.rate_limit import TokenBuckets
from macula_nat.net.address import (
    ANY_IPV4,
    Address,
    any_address,
    ip_version,
    normalise_address,
    source_prefix,
)
from macula_nat.net.demux import Traffic, classify
from macula_nat.net.endpoint import UdpEndpoint, UdpStack
from macula_nat.traversal.config import TraversalConfig
from macula_nat.traversal.happy_eyeballs import due, reachable
from macula_nat.traversal.prediction import random_probe_ports
from macula_nat.traversal.prover import PathProver
from macula_nat.traversal.punch_wire import (
    KEY_SIZE,
    LINK_ID_SIZE,
    Again,
    Answer,
    ControlError,
    Offer,
    Role,
    Sync,
    decode_control,
    encode_control,
    peek_link_id,
)
from macula_nat.traversal.strategy import Plan, Side, choose

__all__ = ["PendingPunch", "Punch", "PunchRef", "Puncher", "PuncherStatistics"]

logger = logging.getLogger(__name__)

MAX_KEPT_SOCKETS = 4
"""Birthday sockets kept open without a proof of our own, because the peer's probes reached them."""

MAX_TARGETS = 96
"""Addresses one punch probes at most: candidates, predicted ports and peer-reflexive sources."""

_AGAIN_ATTEMPTS = 3
"""Punch rounds when UDP works again on a relayed connection (as a connect's), whether or not it
punched before: a single round that missed would leave it relayed until ``retry_interval``."""

Candidates = Callable[[], tuple[tuple[Address, ...], tuple[Address, ...]]]
"""This node's candidates (observed mapping, LAN) and predicted next mappings, now."""


@attrs.frozen(order=True)
class PunchRef:
    """Names one punch (see :meth:`Puncher.pending`)."""

    id: int


@attrs.frozen
class PendingPunch:
    """A punch in flight."""

    ref: PunchRef
    peer: NodeId
    attempt: int
    started_at: float
    targets: tuple[Address, ...]


@attrs.frozen
class PuncherStatistics:
    punches: int
    punch_failures: int
    upgrades: int
    """Relayed connections moved to a punched path."""
    fallbacks: int
    """Punched paths that died (the connection went back to the relay)."""
    birthday_sockets: int
    """Sockets opened for birthday punches, in all."""
    probes_unanswered: int
    """Fresh probe frames left unanswered: their source was over ``probe_answer_rate``."""
    probe_answer_rate: float
    probe_answer_burst: float
    probe_answer_sources: int
    """The per-source limit on answering probes (from :class:`TraversalConfig`)."""


@attrs.define(eq=False)
class Punch:
    """The punch state of one connection (both sides keep one)."""

    link: PeerLink
    connection: Connection
    prover: PathProver
    role: Role
    nursery: trio.Nursery
    """The connection's nursery: punching tasks end with the connection."""
    targets: tuple[Address, ...] = ()
    plan: Plan | None = None
    """The plan over both profiles, once the signalling exchanged them."""
    peer_ip: str | None = None
    """The peer's public IP (its first candidate), for birthday probing."""
    attempt: int = 0
    offers: int = 0
    """Offers sent for this connection so far."""
    pending: PunchRef | None = None
    started_at: float = 0.0
    proofs: dict[Address, float] = attrs.Factory(dict)
    """When each peer address last answered one of our probes."""
    endpoints: dict[Address, UdpEndpoint] = attrs.Factory(dict)
    """Where each proven peer address is reached from (the shared socket or a birthday one)."""
    proven: trio.Event = attrs.Factory(trio.Event)
    sockets: list[UdpEndpoint] = attrs.Factory(list)
    """Birthday sockets open now: all of them during a birthday punch, afterwards the one that
    won (or those the peer's probes reached)."""
    heard: set[UdpEndpoint] = attrs.Factory(set)
    """Birthday sockets an authentic frame from the peer arrived on."""
    probed_back: set[tuple[UdpEndpoint, Address]] = attrs.Factory(set)
    """(birthday socket, peer address) pairs a fresh probe arrived on and we probed back."""
    birthday_until: float = -math.inf
    """When the birthday sockets that did not win are closed (pushed back by each attempt)."""
    answers_in: trio.MemorySendChannel[Answer] = attrs.field(init=False)
    answers: trio.MemoryReceiveChannel[Answer] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.answers_in, self.answers = trio.open_memory_channel[Answer](4)


class Puncher:
    """Punches for one node: see the module docstring.

    ``probes`` and ``quic`` are the shared socket's views; ``stack`` binds birthday sockets;
    ``candidates`` and ``profile`` say what this node offers (``observe`` refreshes the
    observed mapping first: after a NAT rebinding it has moved); ``routes`` maps a peer address to
    the link whose QUIC datagrams come from it (the coordinator's QUIC reader uses it).
    """

    def __init__(
        self,
        *,
        probes: UdpEndpoint,
        quic: UdpEndpoint,
        stack: UdpStack,
        config: TraversalConfig,
        candidates: Candidates,
        observe: Callable[[], Awaitable[object]],
        profile: Callable[[], NatProfile | None],
        routes: dict[Address, PeerLink],
        rng: random.Random | None = None,
    ) -> None:
        self._probes = probes
        self._quic = quic
        self._stack = stack
        self.config = config
        self._candidates = candidates
        self._observe = observe
        self._profile = profile
        self._routes = routes
        self._rng = rng or random.Random()
        self._by_link_id: dict[bytes, Punch] = {}
        self._live: dict[PeerLink, Punch] = {}
        """Every connection's punch state, responders' before their first Offer too."""
        self._refs = itertools.count(1)
        self._punches = self._failures = self._upgrades = self._fallbacks = 0
        self._birthday_sockets = 0
        self._answers = TokenBuckets(
            config.probe_answer_rate, config.probe_answer_burst, config.probe_answer_sources
        )
        self._unanswered = 0

    # -- lifecycle -------------------------------------------------------------------------------

    def start(
        self, link: PeerLink, connection: Connection, role: Role, nursery: trio.Nursery
    ) -> Punch:
        """Punch state for a new connection; its signalling reader and path watcher run in
        ``nursery``. The responder's link id and key come with the first Offer."""
        link_id = os.urandom(LINK_ID_SIZE) if role is Role.INITIATOR else bytes(LINK_ID_SIZE)
        prover = PathProver(link_id, os.urandom(KEY_SIZE), role)
        punch = Punch(link, connection, prover, role, nursery)
        if link.direct is not None:  # dialled directly: the path is as good as proven
            punch.proofs[link.direct.address] = trio.current_time()
            punch.endpoints[link.direct.address] = link.direct.endpoint
        if role is Role.INITIATOR:
            self._by_link_id[link_id] = punch
        self._live[link] = punch
        nursery.start_soon(self._serve_control, punch)
        nursery.start_soon(self._watch_direct, punch)
        return punch

    def forget(self, link: PeerLink) -> None:
        """The connection on ``link`` ended: drop its state, routes and sockets."""
        self._live.pop(link, None)
        for link_id, punch in list(self._by_link_id.items()):
            if punch.link is link:
                del self._by_link_id[link_id]
                for socket in punch.sockets:
                    socket.close()
        for address in [a for a, routed in self._routes.items() if routed is link]:
            del self._routes[address]

    def find(self, peer: NodeId) -> Punch | None:
        """The punch state of the connection to node ``peer``."""
        for punch in self._by_link_id.values():
            if punch.connection._peer_id == peer:
                return punch
        return None

    def new_ref(self) -> PunchRef:
        return PunchRef(next(self._refs))

    def pending(self) -> list[PendingPunch]:
        return [
            PendingPunch(p.pending, p.connection.peer_id, p.attempt, p.started_at, p.targets)
            for p in self._by_link_id.values()
            if p.pending is not None
        ]

    def statistics(self) -> PuncherStatistics:
        config = self.config
        return PuncherStatistics(
            self._punches,
            self._failures,
            self._upgrades,
            self._fallbacks,
            self._birthday_sockets,
            self._unanswered,
            config.probe_answer_rate,
            config.probe_answer_burst,
            config.probe_answer_sources,
        )

    # -- signalling ------------------------------------------------------------------------------

    async def _serve_control(self, punch: Punch) -> None:
        """Read the peer's signalling until the connection ends."""
        connection = punch.connection
        while True:
            try:
                message = decode_control(await connection.receive_control())
            except (ConnectionFailed, trio.ClosedResourceError):
                return
            except ControlError as exc:
                logger.warning("bad signalling from %s: %s", connection.peer_id.short(), exc)
                continue
            logger.debug("%s: %r", punch.role.name, message)
            if isinstance(message, Offer) and punch.role is Role.RESPONDER:
                await self._on_offer(punch, message)
            elif isinstance(message, Sync) and punch.role is Role.RESPONDER:
                if message.link_id == punch.prover.link_id:
                    punch.nursery.start_soon(self._probe_burst, punch)
            elif isinstance(message, Answer) and punch.role is Role.INITIATOR:
                with contextlib.suppress(trio.WouldBlock):
                    punch.answers_in.send_nowait(message)
            elif isinstance(message, Again) and punch.role is Role.INITIATOR:
                logger.info("%s asks to punch again: its UDP works again",
                            connection.peer_id.short())  # fmt: skip
                self._punch_again(punch)

    def _learn(self, punch: Punch, message: Offer | Answer) -> None:
        """Take the peer's candidates and profile from its Offer or Answer."""
        punch.targets = _targets(message.predicted, message.candidates)
        punch.peer_ip = message.candidates[0][0] if message.candidates else None
        local = self._profile()
        punch.plan = None
        if local is not None and message.profile is not None:
            punch.plan = choose(local, message.profile)

    async def _on_offer(self, punch: Punch, offer: Offer) -> None:
        prover = punch.prover
        if prover.link_id != offer.link_id or prover.key != offer.key:
            if self._by_link_id.get(prover.link_id) is punch:
                del self._by_link_id[prover.link_id]
            punch.prover = PathProver(offer.link_id, offer.key, Role.RESPONDER)
            self._by_link_id[offer.link_id] = punch
        self._learn(punch, offer)
        punch.attempt = offer.attempt
        candidates, predicted = self._candidates()
        answer = Answer(
            link_id=offer.link_id,
            attempt=offer.attempt,
            candidates=candidates,
            predicted=predicted,
            profile=self._profile(),
        )
        with contextlib.suppress(ConnectionFailed, trio.ClosedResourceError):
            await punch.connection.send_control(encode_control(answer))

    # -- punching ------------------------------------------------------------------------------

    async def introduce(self, punch: Punch) -> None:
        """The dialler of a direct connection: exchange link id, key and candidates (an Offer
        and its Answer, no punch), so both sides can check the path and follow the peer to a
        new address after a NAT rebinding."""
        candidates, predicted = self._candidates()
        offer = Offer(
            link_id=punch.prover.link_id,
            key=punch.prover.key,
            attempt=1,
            candidates=candidates,
            predicted=predicted,
            profile=self._profile(),
        )
        with contextlib.suppress(ConnectionFailed, trio.ClosedResourceError):
            await punch.connection.send_control(encode_control(offer))
            answer = await self._answer(punch, 1)
            if answer is not None:
                self._learn(punch, answer)

    async def udp_returned(self) -> None:
        """This node's UDP works again after being blocked: every relayed connection punches
        now (an initiator starts; a responder asks its initiator with :class:`Again`), so they
        upgrade to direct as soon as a path exists rather than at the next retry."""
        for punch in list(self._live.values()):
            if punch.link.direct is not None:
                continue
            if punch.role is Role.INITIATOR:
                self._punch_again(punch)
                continue
            again = Again(link_id=punch.prover.link_id, attempt=max(1, punch.attempt))
            with contextlib.suppress(ConnectionFailed, trio.ClosedResourceError):
                await punch.connection.send_control(encode_control(again))

    def _punch_again(self, punch: Punch) -> None:
        """The initiator: punch now; keep punching (as :meth:`keep_punched`) if it never did."""
        if punch.pending is not None:
            return  # a punch is in flight already
        if punch.offers == 0:
            self.keep_punched(punch, _AGAIN_ATTEMPTS)
        else:  # as many rounds: one birthday round misses about 1 time in 30
            self.punch_soon(punch, (), attempts=_AGAIN_ATTEMPTS)

    def keep_punched(self, punch: Punch, attempts: int) -> PunchRef:
        """The initiator: punch in the background (listed in :meth:`pending` from now on), and
        again ``retry_interval`` after punching failed or the direct path died."""
        ref = punch.pending = self.new_ref()
        punch.started_at = trio.current_time()
        punch.nursery.start_soon(self._keep_punched, punch, attempts, ref)
        return ref

    def punch_soon(
        self, punch: Punch, extra: tuple[Address, ...], *, attempts: int = 1
    ) -> PunchRef:
        """``attempts`` more punch rounds now, also probing ``extra``; listed in
        :meth:`pending`."""
        ref = punch.pending = self.new_ref()
        punch.started_at = trio.current_time()
        punch.targets = _targets(punch.targets, extra)
        punch.nursery.start_soon(self.punch, punch, attempts, extra, ref)
        return ref

    async def _keep_punched(self, punch: Punch, attempts: int, ref: PunchRef) -> None:
        method = punch.link.method
        while True:
            if punch.link.direct is None:
                await self.punch(punch, attempts, (), ref)
                ref = self.new_ref()
            if punch.link.direct is not None:
                await method.wait_value(lambda value: value is ConnectionMethod.RELAYED)
            await trio.sleep(self.config.retry_interval)

    async def punch(
        self, punch: Punch, attempts: int, extra: tuple[Address, ...], ref: PunchRef
    ) -> bool:
        """Up to ``attempts`` DCUtR rounds, also probing ``extra``; True once a direct path is
        proven."""
        config = self.config
        connection = punch.connection
        punch.pending = ref
        punch.started_at = trio.current_time()
        self._punches += 1
        try:
            for attempt in range(1, attempts + 1):
                punch.attempt = attempt
                if punch.offers:  # not the first: this node's mapping may have moved since
                    await self._observe()
                punch.offers += 1
                candidates, predicted = self._candidates()
                offer = Offer(
                    link_id=punch.prover.link_id,
                    key=punch.prover.key,
                    attempt=attempt,
                    candidates=candidates,
                    predicted=predicted,
                    profile=self._profile(),
                )
                sent_at = trio.current_time()
                try:
                    await connection.send_control(encode_control(offer))
                    answer = await self._answer(punch, attempt)
                    if answer is None:
                        logger.info(
                            "no answer to punch offer %d to %s", attempt, connection.peer_id.short()
                        )
                        continue
                    rtt = trio.current_time() - sent_at
                    self._learn(punch, answer)
                    punch.targets = _targets(punch.targets, extra)
                    sync = Sync(link_id=punch.prover.link_id, attempt=attempt)
                    await connection.send_control(encode_control(sync))
                except (ConnectionFailed, trio.ClosedResourceError):
                    return False
                await trio.sleep(rtt / 2)
                if await self._probe_burst(punch):
                    return True
                await trio.sleep(config.attempt_gap)
            self._failures += 1
            logger.info(
                "punching %s failed after %d attempts", connection.peer_id.short(), attempts
            )
            return False
        finally:
            punch.pending = None

    async def _answer(self, punch: Punch, attempt: int) -> Answer | None:
        with trio.move_on_after(self.config.signal_timeout):
            while True:
                answer = await punch.answers.receive()
                if answer.attempt == attempt and answer.link_id == punch.prover.link_id:
                    return answer
        return None

    async def _probe_burst(self, punch: Punch) -> bool:
        """Probe the peer for ``punch_window`` (a birthday punch when the plan says so); True
        once a direct path is proven."""
        plan = punch.plan
        if plan is not None and plan.birthday_hard is Side.LOCAL:
            return await self._birthday_hard(punch)
        random_ports = plan is not None and plan.birthday_hard is Side.REMOTE
        config = self.config
        ports = self._birthday_ports() if random_ports and punch.peer_ip else ()
        per_round = max(1, math.ceil(config.birthday_rate * config.probe_interval))
        rounds = max(
            math.ceil(config.punch_window / config.probe_interval),
            math.ceil(len(ports) / per_round),
        )
        versions = self._probes.ip_versions
        for index in range(rounds):
            if punch.link.direct is not None:
                return True
            targets = reachable(punch.targets, versions)
            for target in due(targets, index * config.probe_interval, config.ipv6_head_start):
                await self._send_probe(punch, target)
            for port in ports[index * per_round : (index + 1) * per_round]:
                assert punch.peer_ip is not None
                await self._send_probe(punch, (punch.peer_ip, port))
            with trio.move_on_after(config.probe_interval):
                await punch.proven.wait()
        return punch.link.direct is not None

    def _birthday_ports(self) -> tuple[int, ...]:
        return random_probe_ports(self._rng, self.config.birthday_probes)

    async def _birthday_hard(self, punch: Punch) -> bool:
        """Send from every birthday socket (opened by the first attempt) to the peer and wait
        for its random probes to hit one of their mappings; True once a path is proven.

        The sockets stay open, listening, until ``punch_window`` after the latest attempt: a
        late Sync only delays the peer's probes. Sockets the peer reached stay open after that
        even without a proof of our own (a datagram was lost): the peer may have proven that
        path and will probe it again, which proves it for us too."""
        config = self.config
        interval = 1 / config.birthday_rate
        window = max(config.punch_window, config.birthday_probes * interval)
        punch.birthday_until = trio.current_time() + window + config.attempt_gap + window
        if len(punch.sockets) < config.birthday_sockets:
            await self._open_birthday(punch)
        for socket in list(punch.sockets):
            for target in reachable(punch.targets, socket.ip_versions):
                await self._send_probe(punch, target, socket)
            await trio.sleep(interval)
        with trio.move_on_after(window):
            await punch.proven.wait()
        return punch.link.direct is not None

    async def _open_birthday(self, punch: Punch) -> None:
        before = len(punch.sockets)
        wildcard = any_address(ip_version(punch.peer_ip)) if punch.peer_ip else ANY_IPV4
        for _ in range(self.config.birthday_sockets - len(punch.sockets)):
            try:
                socket = await self._stack.bind((wildcard, 0))
            except OSError as exc:
                logger.warning("birthday punch: only %d sockets: %s", len(punch.sockets), exc)
                break
            punch.sockets.append(socket)
            punch.nursery.start_soon(self._read_socket, punch, socket)
        self._birthday_sockets += len(punch.sockets) - before
        punch.nursery.start_soon(self._settle_birthday, punch)

    async def _settle_birthday(self, punch: Punch) -> None:
        """Close the birthday sockets that did not win, once the punch is over."""
        while not punch.proven.is_set() and (
            punch.pending is not None or trio.current_time() < punch.birthday_until
        ):
            with trio.move_on_after(self.config.punch_window):
                await punch.proven.wait()
        direct = punch.link.direct
        keep = [socket for socket in punch.sockets if socket in punch.heard][:MAX_KEPT_SOCKETS]
        if direct is not None and direct.endpoint in punch.sockets and direct.endpoint not in keep:
            keep.append(direct.endpoint)
        for socket in punch.sockets:
            if socket not in keep:
                socket.close()
        punch.sockets[:] = keep

    async def _read_socket(self, punch: Punch, socket: UdpEndpoint) -> None:
        """Read a birthday socket: probe frames to the prover, QUIC from the peer to the link."""
        with contextlib.suppress(trio.ClosedResourceError):
            while True:
                data, source = await socket.receive_from()
                kind = classify(data)
                if kind is Traffic.PUNCH:
                    if await self._on_frame(punch, data, source, socket):
                        punch.heard.add(socket)
                elif kind is Traffic.QUIC and self._routes.get(source) is punch.link:
                    punch.link.deliver_direct(data)

    async def _send_probe(
        self, punch: Punch, target: Address, via: UdpEndpoint | None = None
    ) -> None:
        frame = punch.prover.probe(target, trio.current_time())
        try:
            await (via or self._probes).send_to(frame, target)
        except (OSError, ValueError, trio.ClosedResourceError) as exc:
            logger.debug("probe to %s failed: %s", target, exc)

    # -- proofs ----------------------------------------------------------------------------------

    async def read_probes(self) -> None:
        """Route each probe frame arriving on the shared socket to its connection's prover."""
        while True:  # in batches: a demux view is drained as fast as it is filled
            for data, source in await self._probes.receive_batch():
                link_id = peek_link_id(data)
                punch = None if link_id is None else self._by_link_id.get(link_id)
                if punch is not None:
                    await self._on_frame(punch, data, source, self._probes)

    async def _on_frame(self, punch: Punch, data: bytes, source: Address, via: UdpEndpoint) -> bool:
        """Handle a probe frame that came through ``via``; whether it was authentic."""
        now = trio.current_time()
        received = punch.prover.receive(data, source, now)
        if received.reply is not None:  # a fresh probe: worth an answer, within the limit
            if not self._answers.allow(source_prefix(source[0]), now):
                self._unanswered += 1
                return True
            if source not in punch.targets and len(punch.targets) < MAX_TARGETS:
                # Peer-reflexive: where its packets really come from. Only a fresh probe, not
                # sent from where it was sent to, gets here: it proves nothing yet (the probe
                # back must be answered from there).
                punch.targets += (source,)
            # The peer proves this path with our answer and may carry the connection over it
            # before we prove it ourselves: its QUIC must reach the link meanwhile (QUIC
            # authenticates what the route lets through), or it would be lost while our
            # answers keep the peer's consent checks happy.
            self._routes.setdefault(source, punch.link)
            with contextlib.suppress(OSError):
                await via.send_to(received.reply, source)
            if received.probe_back or self._first_from(punch, via, source):
                await self._send_probe(punch, source, via)
        if received.proven is not None:
            self._adopt(punch, received.proven, self._quic if via is self._probes else via)
        return received.authentic

    def _first_from(self, punch: Punch, via: UdpEndpoint, source: Address) -> bool:
        """A fresh probe from ``source`` on a birthday socket that never probed it back: probe
        back once from there. The prover's per-address gap counts probes from any socket, but a
        birthday punch probes the peer from all of them before the peer's probes open the way,
        so only this socket's probe back can still prove the path that met."""
        if via is self._probes or (via, source) in punch.probed_back:
            return False
        punch.probed_back.add((via, source))
        return True

    def _adopt(self, punch: Punch, address: Address, endpoint: UdpEndpoint) -> None:
        """``address`` answered our probe (through ``endpoint``): carry the connection there,
        unless the current direct path still answers (several predicted ports may prove at
        once; flapping between them helps nobody). A path unanswered for a consent interval
        gives way: that is how a NAT rebinding is followed."""
        now = trio.current_time()
        punch.proofs[address] = now
        punch.endpoints[address] = endpoint
        current = punch.link.direct
        if current is not None and (current.address == address or not self._quiet(punch, now)):
            return
        self._use(punch, address)

    def _quiet(self, punch: Punch, now: float) -> bool:
        """The current direct path missed its last consent check."""
        direct = punch.link.direct
        last = -math.inf if direct is None else punch.proofs.get(direct.address, -math.inf)
        return now - last > 1.5 * self.config.consent_interval

    def _use(self, punch: Punch, address: Address) -> None:
        """Carry the connection over the proven ``address`` from now on."""
        link = punch.link
        current = link.direct
        if current is not None:
            self._routes.pop(current.address, None)
        else:
            self._upgrades += 1
        self._routes[address] = link
        method = ConnectionMethod.PUNCHED if current is None else current.method
        link.use_direct(DirectPath(punch.endpoints[address], address, method))
        punch.proven.set()

    def _fresher(self, punch: Punch) -> Address | None:
        """Another peer address proven since the current path last answered, if any."""
        direct = punch.link.direct
        if direct is None:
            return None
        last = punch.proofs.get(direct.address, -math.inf)
        proven = [(t, a) for a, t in punch.proofs.items() if a != direct.address and t > last]
        return max(proven)[1] if proven else None

    async def _watch_direct(self, punch: Punch) -> None:
        """Consent checks on each direct path while it lives; back to the relay when one dies
        (both sides watch: each stops sending into a dead path on its own). Without a relay
        to fall back to, the checks go on (they find the peer's new address after a NAT
        rebinding) and QUIC's idle timeout decides whether the connection lives."""
        config = self.config
        link = punch.link
        while not link.closed:
            await link.method.wait_value(lambda value: value is not ConnectionMethod.RELAYED)
            while (direct := link.direct) is not None and not link.closed:
                now = trio.current_time()
                if self._quiet(punch, now) and (fresher := self._fresher(punch)) is not None:
                    logger.info("%r: %s went quiet; following the peer to %s",
                                link, direct.address, fresher)  # fmt: skip
                    self._use(punch, fresher)
                    continue
                last_proof = punch.proofs.get(direct.address, -math.inf)
                silent = now - last_proof > config.consent_timeout
                if silent and link.relay is not None:
                    logger.info("%r: direct path to %s silent; back to the relay",
                                link, direct.address)  # fmt: skip
                    punch.prover.forget(direct.address)
                    self._routes.pop(direct.address, None)
                    punch.proven = trio.Event()
                    self._fallbacks += 1
                    link.drop_direct()
                    break
                await self._send_probe(punch, direct.address, self._via(direct))
                with trio.move_on_after(config.consent_interval):
                    await link.method.wait_transition()

    def _via(self, direct: DirectPath) -> UdpEndpoint:
        """Where probes for ``direct`` leave from: its birthday socket, or the shared socket."""
        return self._probes if direct.endpoint is self._quic else direct.endpoint

    async def reprobe(self) -> None:
        """Check every punched path now (this node's NAT changed)."""
        for punch in list(self._by_link_id.values()):
            direct = punch.link.direct
            if direct is not None:
                await self._send_probe(punch, direct.address, self._via(direct))


def _targets(first: Sequence[Address], then: Sequence[Address]) -> tuple[Address, ...]:
    """``first`` then ``then``, without repeats (an Offer's predicted mappings go first: two
    sequential NATs then allocate their next ports to the same pairs of destinations in the
    same order, so the probes meet)."""
    seen: dict[Address, None] = {}
    for address in (*first, *then):
        seen.setdefault(normalise_address(address), None)
    return tuple(seen)


def at_ports(targets: Sequence[Address], ports: Sequence[int]) -> tuple[Address, ...]:
    """``ports`` at each IP of ``targets``."""
    ips = dict.fromkeys(ip for ip, _ in targets)
    return tuple((ip, port) for ip in ips for port in ports)
