"""RelayNode: the Python mirror of the Erlang ``macula_relay_node``, as a small actor tree.

::

    relay (Supervisor, one_for_one)
      relay_server    RelayServer: the UDP socket; relay frames and STUN (it is an observer);
                      with ``tcp``, also the TCP/TLS listener (:mod:`.tcp_server`)
      relay_sessions  SessionSupervisor (DynamicSupervisor): one SessionActor per session

The :class:`RelayNode` handle owns what must outlive a crash: the :class:`~.core.RelayCore`
(registrations, sessions, counters), the settings and the callbacks. It hands itself to each
incarnation of its actors, so a crashed server comes back on the same address with every
registration and session intact, and a crashed session actor costs only its session.

The server's socket task moves datagrams straight through the core (no mailbox on the
forwarding path), a batch of them per scheduler round, each forwarded without waiting; the
server's mailbox starts session actors and runs the expiry sweep. With ``tcp`` a second task
moves the frames of the TCP/TLS links the same way; every frame the core sends goes to the
link of its address if it has one, else out of the UDP socket, so a session may join a node on
UDP with one on TCP.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Final

import attrs
import trio

from macula_nat.actors import (
    Actor,
    ActorError,
    ActorRef,
    ChildSpec,
    ChildType,
    DynamicSupervisor,
    DynamicSupervisorRef,
    Exit,
    Exited,
    MailboxFull,
    NoProc,
    Registry,
    Restart,
    Stop,
    Supervisor,
    is_normal,
    open_actor,
)
from macula_nat.directory import Directory
from macula_nat.identity import NodeId, NodeKey
from macula_nat.nat.binding import ObserverAddresses
from macula_nat.net.address import Address, normalise_address
from macula_nat.net.endpoint import UdpEndpoint, UdpStack, check_dual_stack

from .core import DirectoryAsked, RelayCore, RelayedSession, SessionEnded, SessionOpened
from .directory_path import serve_query
from .frames import DirectoryAnswer, DirectoryStatus, Reason
from .session import SESSION_OVER, SessionActor
from .settings import MIB, RelayConfig, RelaySettings
from .statistics import RelayStatistics
from .tcp_server import TcpListenerStatistics, TcpRelayConfig, TcpRelayListener
from .timers import Timers
from .tls import server_context

__all__ = [
    "RelayNode",
    "RelayServer",
    "SessionEndCallback",
    "SessionInfo",
    "SessionStartCallback",
    "SessionSupervisor",
    "open_relay",
]

logger = logging.getLogger(__name__)

SessionStartCallback = Callable[["SessionInfo"], object]
"""``on_session_start(session)``: a :class:`SessionInfo` (the guide's session map): its
``peer_a`` asked for the session, ``peer_b`` is its target."""
SessionEndCallback = Callable[["SessionInfo"], object]
"""``on_session_end(session)``: the :class:`SessionInfo` at its end, with
``bytes_transferred`` (payload bytes, both directions) and the ``reason`` it ended."""

_EFFECT_ROUNDS: Final = 3
_QUERIES_WAITING: Final = 256
"""Directory queries queued at the relay at most; more are answered BUSY."""
_QUERIES_AT_ONCE: Final = 16
"""Directory queries the relay runs at once (each a DHT lookup or put)."""
_QUERY_TIMEOUT: Final = 20.0
"""Seconds a directory query may take at the relay (a DHT put is a lookup and a round)."""
"""Opened -> (spawn failed) ended -> nothing: effects never chain further."""
_STOP_GRACE: Final = 5.0


@attrs.frozen
class SessionInfo:
    """A snapshot of one relayed session (what the session callbacks receive)."""

    id: int
    peer_a: NodeId
    peer_b: NodeId
    started_at: float
    bytes_transferred: int
    datagrams: int
    actor: ActorRef | None
    reason: Reason | None = None
    """Why the session ended (``on_session_end`` only; None while it runs)."""

    @classmethod
    def of(cls, session: RelayedSession, reason: Reason | None = None) -> SessionInfo:
        return cls(
            session.id,
            session.a,
            session.b,
            session.started_at,
            session.bytes_transferred,
            session.datagrams,
            session.actor,
            reason,
        )


class _Sweep:
    def __repr__(self) -> str:
        return "SWEEP"


class _StartSessions:
    def __repr__(self) -> str:
        return "START_SESSIONS"


_SWEEP: Final = _Sweep()
_START_SESSIONS: Final = _StartSessions()
"""Cast to the server when sessions wait for actors: one message however many wait, so a burst
of requests cannot fill its mailbox."""


class RelayNode:
    """A relay on ``stack`` at ``listen``, identified by ``key``; see the module docstring.

    Run it with :func:`open_relay` or put :meth:`child_spec` in a tree; it relays once
    :meth:`enable` is called and answers STUN from the start.
    """

    def __init__(
        self,
        stack: UdpStack,
        listen: Address,
        key: NodeKey,
        config: RelayConfig | None = None,
        *,
        dual_stack: bool = False,
        tcp: TcpRelayConfig | None = None,
        directory: Directory | None = None,
    ) -> None:
        self.stack = stack
        self.directory = directory
        """The directory registered nodes may use through this relay (DIRECTORY_QUERY: nodes
        whose UDP is blocked, so no DHT); None refuses their queries."""
        self.listen = normalise_address(listen)
        self.dual_stack = dual_stack
        """Listen for IPv4 and IPv6 on one socket (``listen`` is then ``("::", port)``): one
        relay, announced at an address of each version, for single-stack and dual-stack nodes."""
        if dual_stack:
            check_dual_stack(self.listen[0])
        self.key = key
        self.tcp = tcp
        """Serve links over TCP/TLS too (on ``stack``'s streams; None: UDP only)."""
        self._core = RelayCore(key, config)
        self._endpoint: UdpEndpoint | None = None
        self._address: Address | None = None
        self._tcp: TcpRelayListener | None = None
        self._tcp_address: Address | None = None
        self._server: ActorRef | None = None
        self._sessions: DynamicSupervisorRef | None = None
        self._actors: dict[ActorRef, int] = {}
        """Running session actors and their sessions."""
        self._timers = Timers()
        """The session actors' deadlines, served by the server."""
        self._to_start: deque[int] = deque()
        """Sessions waiting for their actor (at most ``max_sessions``)."""
        self._start_requested = False
        self._on_session_start: SessionStartCallback | None = None
        self._on_session_end: SessionEndCallback | None = None
        self._queries, self._query_inbox = trio.open_memory_channel[DirectoryAsked](
            _QUERIES_WAITING
        )
        """Directory queries waiting for the server's query task (bounded: more are BUSY)."""

    def __repr__(self) -> str:
        where = self._address or self.listen
        return f"<RelayNode {self.node_id.short()} {where[0]}:{where[1]}>"

    # -- the API ---------------------------------------------------------------------------------

    @property
    def node_id(self) -> NodeId:
        return self.key.node_id

    @property
    def address(self) -> Address:
        """The bound address (ports resolved); RuntimeError before the server first started."""
        if self._address is None:
            raise RuntimeError(f"{self} has not bound its socket yet")
        return self._address

    @property
    def config(self) -> RelayConfig:
        return self._core.config

    @property
    def settings(self) -> RelaySettings | None:
        """The current limits; None while disabled."""
        return self._core.settings

    @property
    def enabled(self) -> bool:
        return self._core.enabled

    async def enable(
        self,
        max_sessions: int = 100,
        bandwidth_limit: float = float(MIB),
        session_timeout: float = 1800.0,
        on_session_start: SessionStartCallback | None = None,
        on_session_end: SessionEndCallback | None = None,
        *,
        idle_timeout: float = 300.0,
        max_sessions_per_node: int = 16,
        bandwidth_burst: float | None = None,
        session_source_share: float = 0.1,
    ) -> None:
        """Accept registrations and relay sessions within these limits (see
        :class:`RelaySettings`); calling it again changes the limits of later sessions."""
        self._core.enable(
            RelaySettings(
                max_sessions=max_sessions,
                bandwidth_limit=bandwidth_limit,
                session_timeout=session_timeout,
                idle_timeout=idle_timeout,
                max_sessions_per_node=max_sessions_per_node,
                bandwidth_burst=bandwidth_burst,
                session_source_share=session_source_share,
            )
        )
        self._on_session_start = on_session_start
        self._on_session_end = on_session_end
        logger.info("%s relaying: at most %d sessions", self, max_sessions)
        await trio.lowlevel.checkpoint()

    async def disable(self) -> None:
        """Stop relaying, gracefully: every session ends (``on_session_end`` runs for each
        before this returns), every node is told ``relay_disabled``, and new requests are
        refused. STUN is still answered."""
        await self._flush(self._core.disable())
        actors = list(self._actors)
        with trio.move_on_after(_STOP_GRACE):
            for ref in actors:
                await ref.wait_exited()
        logger.info("%s disabled", self)

    @property
    def tcp_address(self) -> Address | None:
        """Where the TCP/TLS listener is bound; None without ``tcp`` or before it started."""
        return self._tcp_address

    def statistics(self) -> RelayStatistics:
        return attrs.evolve(self._core.statistics(), session_actors=len(self._actors))

    def tcp_statistics(self) -> TcpListenerStatistics | None:
        """The TCP/TLS listener's counters while it runs."""
        return None if self._tcp is None else self._tcp.statistics()

    def sessions(self) -> list[SessionInfo]:
        return [SessionInfo.of(s) for s in self._core.sessions()]

    def child_spec(self, id: str = "relay", *, name: str | None = None) -> ChildSpec:
        """The relay's subtree, for a supervisor; every restart serves the same state."""
        return ChildSpec(id, _relay_tree, (self,), type=ChildType.SUPERVISOR, name=name)

    # -- for the actors --------------------------------------------------------------------------

    def _bind_address(self) -> Address:
        """The listen address, or the address first bound (a restart keeps the port)."""
        return self._address if self._address is not None else self.listen

    def _attach_server(self, server: ActorRef, endpoint: UdpEndpoint) -> None:
        self._server = server
        self._endpoint = endpoint
        self._address = endpoint.local_address
        self._core.addresses = ObserverAddresses(endpoint.local_address)

    def _detach_server(self, server: ActorRef) -> None:
        if self._server is server:
            self._server = None
            self._endpoint = None
            self._tcp = None

    async def _bind_tcp(self, udp: Address) -> TcpRelayListener | None:
        """The TCP/TLS listener on the UDP socket's IP and port number (or ``tcp.port``; a
        restart keeps the port first bound); None without ``tcp``."""
        tcp = self.tcp
        if tcp is None:
            return None
        if self._tcp_address is not None:
            host, port = self._tcp_address
        else:
            host, port = udp[0], udp[1] if tcp.port is None else tcp.port
        context = server_context(self.key)  # once, at start-up: a key and two small files
        stream = await self.stack.listen_stream((host, port), dual_stack=self.dual_stack)
        listener = TcpRelayListener(stream, context, tcp)
        self._tcp = listener
        self._tcp_address = listener.local_address
        return listener

    def _route(self, address: Address) -> UdpEndpoint | None:
        """Where a frame to ``address`` leaves: its TCP link if it has one, else UDP."""
        tcp = self._tcp
        if tcp is not None and address in tcp:
            return tcp
        return self._endpoint

    def _attach_sessions(self, supervisor: DynamicSupervisorRef) -> None:
        self._sessions = supervisor

    async def _send(self, data: bytes, address: Address) -> None:
        endpoint = self._route(address)
        if endpoint is None:
            self._core.count_send_failure()
            return
        try:
            await endpoint.send_to(data, address)
        except (OSError, ValueError, trio.ClosedResourceError) as exc:
            self._core.count_send_failure()
            logger.debug("%s: nothing sent to %s: %s", self, address, exc)

    async def _flush(self, sends: list[tuple[bytes, Address]]) -> None:
        """Send what the core decided, then carry out its effects."""
        for data, address in sends:
            await self._send(data, address)
        if self._core.effects:
            await self._apply_effects()

    async def _apply_effects(self) -> None:
        core = self._core
        for _ in range(_EFFECT_ROUNDS):
            effects = core.take_effects()
            if not effects:
                return
            sends: list[tuple[bytes, Address]] = []
            for effect in effects:
                if isinstance(effect, DirectoryAsked):
                    sends += self._take_query(effect)
                    continue
                session = effect.session
                if isinstance(effect, SessionOpened):
                    _run_callback(self._on_session_start, SessionInfo.of(session))
                    if not self._request_actor(session.id):
                        sends += core.end_session(session.id, Reason.SESSION_FAILED)
                elif isinstance(effect, SessionEnded):
                    _run_callback(self._on_session_end, SessionInfo.of(session, effect.reason))
                    if session.actor is not None and session.actor.alive:
                        try:
                            session.actor.cast(SESSION_OVER)
                        except (NoProc, MailboxFull):
                            logger.debug("%s: session actor %s already gone", self, session.actor)
            for data, address in sends:
                await self._send(data, address)

    def _take_query(self, asked: DirectoryAsked) -> list[tuple[bytes, Address]]:
        """Queue a directory query for :meth:`_serve_queries`; answer at once when it cannot
        be served (no directory: REFUSED; the queue full: BUSY)."""
        status = DirectoryStatus.REFUSED if self.directory is None else None
        if status is None:
            try:
                self._queries.send_nowait(asked)
            except trio.WouldBlock:
                status = DirectoryStatus.BUSY
        if status is None:
            return []
        answer = DirectoryAnswer(asked.query.request, status, b"")
        return self._core.answer_directory(asked.node, answer)

    async def _serve_queries(self) -> None:
        """Answer the queued directory queries, :data:`_QUERIES_AT_ONCE` at a time, each
        within :data:`_QUERY_TIMEOUT` (the server's task)."""
        limiter = trio.CapacityLimiter(_QUERIES_AT_ONCE)

        async def serve(asked: DirectoryAsked, directory: Directory) -> None:
            query = asked.query
            try:
                status, body = await serve_query(
                    directory, asked.node, query.op, query.body, _QUERY_TIMEOUT
                )
            finally:
                limiter.release_on_behalf_of(asked)
            answer = DirectoryAnswer(query.request, status, body)
            await self._flush(self._core.answer_directory(asked.node, answer))

        async with trio.open_nursery() as nursery:
            async for asked in self._query_inbox:
                directory = self.directory
                if directory is not None:
                    await limiter.acquire_on_behalf_of(asked)
                    nursery.start_soon(serve, asked, directory)

    def _request_actor(self, session_id: int) -> bool:
        """Queue the session for an actor; False if no server runs to start one."""
        server = self._server
        if server is None or not server.alive:
            return False
        self._to_start.append(session_id)
        self._kick(server)
        return True

    def _kick(self, server: ActorRef) -> None:
        if self._start_requested or not self._to_start:
            return
        try:
            server.cast(_START_SESSIONS)
        except (NoProc, MailboxFull) as exc:  # the sweep or the next request kicks again
            logger.debug("%s: actor starts wait: %s", self, exc)
        else:
            self._start_requested = True

    async def _start_session_actors(self) -> None:
        """Start an actor for every session waiting for one (the server's job)."""
        self._start_requested = False
        for _ in range(len(self._to_start)):
            await self._start_session_actor(self._to_start.popleft())

    async def _start_session_actor(self, session_id: int) -> None:
        if self._core.session(session_id) is None:
            return  # ended already (a CLOSE overtook the start)
        supervisor = self._sessions
        try:
            if supervisor is None:
                raise NoProc("no session supervisor is running")
            await supervisor.start_child(session_id)
        except ActorError as exc:
            logger.warning("%s: session %d has no actor: %s", self, session_id, exc)
            await self._end_session(session_id, Reason.SESSION_FAILED)

    async def _end_session(self, session_id: int, reason: Reason) -> None:
        await self._flush(self._core.end_session(session_id, reason))

    async def _session_actor_exited(self, ref: ActorRef, reason: object) -> None:
        """A session actor exited: if its session still runs, end it (crash: ``session_failed``)."""
        session_id = self._actors.pop(ref, None)
        if session_id is None:
            return
        session = self._core.session(session_id)
        if session is None or session.actor is not ref:
            return
        if isinstance(reason, BaseException) or reason is Exit.KILLED:
            logger.warning("relay session %d lost its actor (%r)", session_id, reason)
            await self._end_session(session_id, Reason.SESSION_FAILED)
        else:
            await self._end_session(session_id, Reason.RELAY_SHUTDOWN)

    async def _sweep(self) -> None:
        await self._flush(self._core.sweep(trio.current_time()))


def _run_callback(callback: Callable[[SessionInfo], object] | None, info: SessionInfo) -> None:
    """Run a user callback; its exception is logged, never raised into the relay."""
    if callback is None:
        return
    try:
        callback(info)
    except Exception:
        logger.exception("relay callback %r raised", callback)


def _relay_tree(relay: RelayNode) -> Supervisor:
    return Supervisor(
        [
            ChildSpec("relay_server", RelayServer, (relay,)),
            ChildSpec(
                "relay_sessions",
                SessionSupervisor,
                (relay,),
                type=ChildType.SUPERVISOR,
            ),
        ],
        intensity=3,
        period=5.0,
    )


class RelayServer(Actor):
    """The relay's socket: every datagram through the core, answers sent, effects carried out."""

    def __init__(self, relay: RelayNode) -> None:
        self._relay = relay

    async def init(self) -> None:
        relay = self._relay
        endpoint = await relay.stack.bind(relay._bind_address(), dual_stack=relay.dual_stack)
        self.start_soon(_close_on_exit, endpoint)
        relay._attach_server(self.ref, endpoint)
        self.start_soon(self._serve, endpoint)
        tcp = await relay._bind_tcp(endpoint.local_address)
        if tcp is not None:
            self.start_soon(_close_on_exit, tcp)
            self.start_soon(tcp.serve)
            self.start_soon(self._serve, tcp)
            where = tcp.local_address
            logger.info("relay %s over TCP/TLS on %s:%d", relay.node_id.short(), *where)
        self.start_soon(relay._timers.run)
        self.start_soon(relay._serve_queries)
        relay._start_requested = False  # an earlier incarnation's kick died with its mailbox
        relay._kick(self.ref)
        self.send_after(relay.config.sweep_interval, _SWEEP)
        address = endpoint.local_address
        logger.info("relay %s on %s:%d", relay.node_id.short(), address[0], address[1])

    async def handle_cast(self, message: Any) -> Stop | None:
        if message is _START_SESSIONS:
            await self._relay._start_session_actors()
            return None
        return await super().handle_cast(message)

    async def handle_info(self, message: Any) -> Stop | None:
        if message is _SWEEP:
            relay = self._relay
            await relay._sweep()
            relay._start_requested = False  # a kick lost to a full mailbox, or to a crash
            relay._kick(self.ref)
            self.send_after(relay.config.sweep_interval, _SWEEP)
            return None
        return await super().handle_info(message)

    async def terminate(self, reason: object) -> None:
        relay = self._relay
        if is_normal(reason):  # a graceful stop: tell every node to go elsewhere
            await relay._flush(relay._core.end_all(Reason.RELAY_SHUTDOWN))
        relay._detach_server(self.ref)

    async def _serve(self, endpoint: UdpEndpoint) -> None:
        """Move datagrams through the core: read every datagram waiting (one scheduler round
        per batch), then send what the core answered, grouped by destination in the order the
        core gave it, each group in one call where the kernel takes runs (UDP GSO: a session's
        burst of equal-sized datagrams leaves in one system call, not one each), each out of
        the endpoint of its address (:meth:`RelayNode._route`); only a full socket buffer
        makes the loop wait. The batch shares one reading of the clock: it was read at one
        instant. What the batch answered leaves before the core's effects are carried out."""
        relay = self._relay
        core = relay._core
        receive = core.receive
        receive_batch = endpoint.receive_batch
        route = relay._route
        now = trio.current_time
        try:
            while True:
                batch = await receive_batch()
                at = now()
                outgoing: dict[tuple[UdpEndpoint, Address], list[bytes]] = {}
                for data, source in batch:
                    for out, address in receive(data, source, at):
                        target = route(address)
                        if target is None:
                            core.count_send_failure()
                            continue
                        group = outgoing.get((target, address))
                        if group is None:
                            outgoing[target, address] = [out]
                        else:
                            group.append(out)
                    if core.effects:
                        await self._send_groups(outgoing)
                        outgoing = {}
                        await relay._apply_effects()
                await self._send_groups(outgoing)
        except trio.ClosedResourceError:
            return  # the server is stopping

    async def _send_groups(self, outgoing: dict[tuple[UdpEndpoint, Address], list[bytes]]) -> None:
        """Send each destination's datagrams, in order; wait only for a full socket buffer."""
        core = self._relay._core
        for (target, address), datagrams in outgoing.items():
            try:
                sent = target.send_batch_nowait(datagrams, address)
            except (OSError, ValueError, trio.ClosedResourceError):
                for _ in datagrams:  # how many left before the error is unknown: none, say
                    core.count_send_failure()
                continue
            for data in datagrams[sent:]:
                await self._send_waiting(target, data, address)
        await trio.lowlevel.checkpoint_if_cancelled()

    async def _send_waiting(self, endpoint: UdpEndpoint, data: bytes, address: Address) -> None:
        try:
            await endpoint.send_to(data, address)
        except (OSError, ValueError, trio.ClosedResourceError):
            self._relay._core.count_send_failure()


async def _close_on_exit(endpoint: UdpEndpoint) -> None:
    try:
        await trio.sleep_forever()
    finally:
        endpoint.close()


class SessionSupervisor(DynamicSupervisor):
    """The relay's session actors: temporary children, never restarted."""

    def __init__(self, relay: RelayNode) -> None:
        super().__init__(
            ChildSpec(
                "relay_session",
                SessionActor,
                (relay,),
                restart=Restart.TEMPORARY,
                shutdown=_STOP_GRACE,
            )
        )
        self._relay = relay

    async def init(self) -> None:
        await super().init()
        relay = self._relay
        assert isinstance(self.ref, DynamicSupervisorRef)
        relay._attach_sessions(self.ref)
        for session in relay._core.sessions():  # orphans of an earlier incarnation
            if session.actor is not None and not session.actor.alive:
                await relay._end_session(session.id, Reason.SESSION_FAILED)

    async def handle_info(self, message: Any) -> Stop | None:
        if isinstance(message, Exited):  # covers a child killed before its terminate ran
            await self._relay._session_actor_exited(message.ref, message.reason)
        return await super().handle_info(message)


@asynccontextmanager
async def open_relay(
    relay: RelayNode, name: str | None = None, registry: Registry | None = None
) -> AsyncIterator[RelayNode]:
    """Run ``relay``'s tree for the ``async with`` block; yields the relay once it is bound."""
    async with open_actor(_relay_tree(relay), name, registry):
        yield relay
