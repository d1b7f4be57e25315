"""RelayClient: a node's registration with its relay, and the sessions it relays.

The :class:`RelayClient` handle owns the link, the sessions and the counters, so they outlive a
crash of its :class:`RelayClientServer` actor; the actor registers (and registers again before
the registration's TTL runs out or when it is lost), sends a KEEPALIVE every
``keepalive_interval`` seconds (which keeps the NAT mapping to the relay alive and measures the
round trip), and reads the socket unless told not to.

The node's one socket is shared with STUN and QUIC: give ``receive=False`` and pass the relay's
datagrams (first byte 4-15, see :func:`~.frames.is_relay_frame`) to
:meth:`RelayClient.datagram_received` from the socket's reader instead.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import attrs
import trio
from trio_util import AsyncValue

from macula_nat.actors import Actor, ChildSpec, Registry, Restart, is_normal, open_actor
from macula_nat.identity import NodeId, NodeKey
from macula_nat.net.address import Address, normalise_address
from macula_nat.net.endpoint import UdpEndpoint

from .client_session import RelaySession
from .errors import RegistrationFailed, RelayRefused, RelayTimeout
from .frames import (
    Challenge,
    Close,
    ControlFrame,
    Data,
    DirectoryAnswer,
    DirectoryOp,
    DirectoryQuery,
    FrameError,
    FrameType,
    HandshakeFrame,
    Keepalive,
    PathChallenge,
    PathResponse,
    Pong,
    Reason,
    Refused,
    Registered,
    RelayAccepted,
    RelayRequest,
    RequestRefused,
    Sealed,
    SessionAck,
    decode,
    encode,
)
from .handshake import ClientHandshake
from .link import Link, Verdict

__all__ = [
    "ClientConfig",
    "ClientStatistics",
    "RelayClient",
    "RelayClientServer",
    "RelayRegistration",
    "open_relay_client",
]

logger = logging.getLogger(__name__)

_RTT_GAIN: Final = 0.125
"""Weight of a new round-trip sample in the smoothed RTT (TCP's alpha, RFC 6298)."""
_MAX_PINGS: Final = 16
_MAX_REQUEST_ID: Final = 0xFFFF_FFFF
_CLOSE_GRACE: Final = 1.0
"""Longest closing a session waits to send its CLOSE (one datagram: normally no wait)."""


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{attribute.name} must be a positive finite number, not {value!r}")


@attrs.frozen
class ClientConfig:
    """A relay client's periods and bounds (all in seconds or counts).

    ``keepalive_interval`` must stay well under 30 s, the UDP mapping lifetime of many NATs.
    Without any authentic frame from the relay for ``liveness_timeout`` the registration is
    taken as lost and made again. Registration sends a HELLO, waits ``handshake_timeout``, and
    tries ``handshake_attempts`` times per round; rounds that fail are retried after a backoff
    from ``retry_backoff`` doubling to ``max_backoff``. A registration is renewed at
    ``renew_fraction`` of its TTL. Session requests are retransmitted every
    ``request_retransmit`` until ``request_timeout``.
    """

    keepalive_interval: float = attrs.field(default=15.0, validator=_positive)
    liveness_timeout: float = attrs.field(default=50.0, validator=_positive)
    handshake_timeout: float = attrs.field(default=1.0, validator=_positive)
    handshake_attempts: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    retry_backoff: float = attrs.field(default=1.0, validator=_positive)
    max_backoff: float = attrs.field(default=30.0, validator=_positive)
    renew_fraction: float = attrs.field(default=0.8, validator=_positive)
    request_timeout: float = attrs.field(default=5.0, validator=_positive)
    request_retransmit: float = attrs.field(default=1.0, validator=_positive)
    session_buffer: int = attrs.field(default=256, validator=attrs.validators.ge(1))
    accept_backlog: int = attrs.field(default=64, validator=attrs.validators.ge(1))


@attrs.frozen
class RelayRegistration:
    """A registration as the node holds it."""

    relay_id: NodeId
    relay: Address
    registration: int
    observed: Address
    """This node's address as the relay sees it (its NAT mapping)."""
    ttl: float
    registered_at: float

    @property
    def expires_at(self) -> float:
        return self.registered_at + self.ttl


@attrs.frozen
class ClientStatistics:
    registered: bool
    registrations: int
    """Successful registrations (renewals included)."""
    sessions: int
    sent: int
    received: int
    dropped: int
    """Datagrams dropped: foreign, unauthenticated, replayed, for unknown sessions, or not
    sent for want of a registration."""
    keepalives: int
    rtt: float | None
    load: int | None


@attrs.define(eq=False)
class _Pending:
    """A session request waiting for the relay's answer."""

    target: NodeId
    event: trio.Event = attrs.Factory(trio.Event)
    result: RelaySession | RelayRefused | None = None


class RelayClient:
    """This node (``key``) registered with the relay at ``relay`` through ``endpoint``.

    ``relay_id`` is the relay's node id when known (from the directory): the registration then
    fails unless that relay signs it. None trusts whatever relay answers first (and keeps it).
    Run it with :func:`open_relay_client` or put :meth:`child_spec` in a tree.
    """

    def __init__(
        self,
        endpoint: UdpEndpoint,
        relay: Address,
        key: NodeKey,
        relay_id: NodeId | None = None,
        *,
        config: ClientConfig | None = None,
        receive: bool = True,
    ) -> None:
        self.endpoint = endpoint
        self.relay = normalise_address(relay)
        self.key = key
        self.relay_id = relay_id
        self.config = config = config or ClientConfig()
        self.receive = receive
        self.registration: AsyncValue[RelayRegistration | None] = AsyncValue(None)
        """The current registration, or None; ``await client.registration.wait_value(...)``."""
        self.last_refusal: Reason | None = None
        """Why the relay last refused to register this node."""
        self.last_close: Reason | None = None
        """Why the relay last ended this node's registration."""
        self.rtt: float | None = None
        """Smoothed round trip to the relay in seconds (from KEEPALIVE/PONG)."""
        self.load: int | None = None
        """The relay's session load in permille, from its last PONG."""
        self._link: Link | None = None
        self._lost = trio.Event()
        self._last_heard = -math.inf
        self._handshake: trio.MemorySendChannel[HandshakeFrame] | None = None
        self._sessions: dict[int, RelaySession] = {}
        self._pending: dict[int, _Pending] = {}
        self._queries: dict[int, trio.MemorySendChannel[DirectoryAnswer]] = {}
        self._incoming, self._accepted = trio.open_memory_channel[RelaySession](
            config.accept_backlog
        )
        self._request_ids = itertools.count(1)
        self._echoes = itertools.count(1)
        self._pings: dict[int, float] = {}
        self._ponged = trio.Event()
        self._registrations = 0
        self._sent = 0
        self._received = 0
        self._dropped = 0
        self._keepalives = 0
        self._handed_over = False

    def __repr__(self) -> str:
        state = "registered" if self._link is not None else "unregistered"
        return (
            f"<RelayClient {self.key.node_id.short()} -> {self.relay[0]}:{self.relay[1]} {state}>"
        )

    # -- the API ---------------------------------------------------------------------------------

    @property
    def node_id(self) -> NodeId:
        return self.key.node_id

    async def wait_registered(self, timeout: float | None = None) -> RelayRegistration:
        """The current registration, waiting for one if there is none.

        Raises :class:`RegistrationFailed` (with the relay's refusal, if any) when there is
        none within ``timeout`` seconds (None: wait for ever).
        """
        registration: RelayRegistration | None = None
        with trio.move_on_after(math.inf if timeout is None else timeout):
            registration = await self.registration.wait_value(lambda value: value is not None)
        if registration is None:
            refusal = self.last_refusal
            why = f": refused ({refusal.label})" if refusal is not None else ""
            raise RegistrationFailed(f"{self} not registered within {timeout} s{why}")
        return registration

    async def request_relay(self, target: NodeId, *, timeout: float | None = None) -> RelaySession:
        """Ask the relay for a session to ``target`` (a node registered with the same relay).

        Waits for a registration first, all within ``timeout`` (default: the config's
        ``request_timeout``). Raises :class:`RelayRefused` with the relay's reason
        (``max_sessions_reached``, ``unknown_target``, ``per_node_cap``, ...) and
        :class:`RelayTimeout` when no answer came in time.
        """
        timeout = self.config.request_timeout if timeout is None else timeout
        retransmit = self.config.request_retransmit
        request_id = self._next_request_id()
        pending = self._pending[request_id] = _Pending(target)
        try:
            with trio.move_on_after(timeout):
                await self.wait_registered()
                for _ in range(max(1, math.ceil(timeout / retransmit))):
                    await self._send_control(RelayRequest(request_id, target))
                    with trio.move_on_after(retransmit):
                        await pending.event.wait()
                    if pending.event.is_set():
                        break
        finally:
            del self._pending[request_id]
        result = pending.result
        if result is None:
            raise RelayTimeout(f"{self}: no answer to a session request within {timeout} s")
        if isinstance(result, RelayRefused):
            raise result
        return result

    async def query_directory(
        self, op: DirectoryOp, body: bytes, *, timeout: float | None = None
    ) -> DirectoryAnswer:
        """Ask the relay's directory (see :mod:`.directory_path`), sending the query again
        every ``request_retransmit`` until an answer, all within ``timeout`` (default: the
        config's ``request_timeout``). Raises :class:`RelayTimeout` when none came."""
        timeout = self.config.request_timeout if timeout is None else timeout
        request_id = self._next_request_id()
        inbox, answers = trio.open_memory_channel[DirectoryAnswer](1)
        self._queries[request_id] = inbox
        try:
            with trio.move_on_after(timeout):
                await self.wait_registered()
                query = DirectoryQuery(request_id, op, body)
                for _ in range(max(1, math.ceil(timeout / self.config.request_retransmit))):
                    await self._send_control(query)
                    with trio.move_on_after(self.config.request_retransmit):
                        return await answers.receive()
        finally:
            del self._queries[request_id]
        raise RelayTimeout(f"{self}: no answer to a directory {op.name} within {timeout} s")

    async def observe(self, timeout: float = 1.0) -> Address | None:
        """Where the relay sees this node now (a KEEPALIVE now; its PONG says), or the last
        known address if no PONG came within ``timeout``; None while unregistered.

        A NAT rebinding shows here first: the relay follows an authenticated node to its new
        address and reports it."""
        if self.registration.value is None:
            await trio.lowlevel.checkpoint()
            return None
        ponged = self._ponged
        await self._send_keepalive()
        with trio.move_on_after(timeout):
            await ponged.wait()
        registration = self.registration.value
        return None if registration is None else registration.observed

    async def accept(self) -> RelaySession:
        """The next session another node opened to this one."""
        return await self._accepted.receive()

    async def datagram_received(self, data: bytes, source: Address) -> None:
        """Handle one datagram read off the shared socket (for ``receive=False``)."""
        await self._on_datagram(data, source)

    def hand_over(self) -> list[RelaySession]:
        """Give this registration's open sessions up, for another registration of this node
        with the same relay to :meth:`adopt`, and leave without ending the registration at the
        relay: the relay keys sessions by node id, so the next registration carries them on,
        where a CLOSE from here would end them (the node moves from TCP back to UDP so)."""
        sessions = [s for s in self._sessions.values() if s.closed_reason is None]
        self._sessions = {}
        self._handed_over = True
        return sessions

    def adopt(self, sessions: list[RelaySession]) -> None:
        """Carry on ``sessions`` that another registration of this node with this relay
        handed over (:meth:`hand_over`): they send and receive through this one now."""
        for session in sessions:
            if session.closed_reason is None:
                session._move_to(self)
                self._sessions[session.id] = session

    def statistics(self) -> ClientStatistics:
        return ClientStatistics(
            registered=self._link is not None,
            registrations=self._registrations,
            sessions=len(self._sessions),
            sent=self._sent,
            received=self._received,
            dropped=self._dropped,
            keepalives=self._keepalives,
            rtt=self.rtt,
            load=self.load,
        )

    def child_spec(
        self,
        id: str = "relay_client",
        *,
        name: str | None = None,
        restart: Restart = Restart.PERMANENT,
    ) -> ChildSpec:
        return ChildSpec(id, RelayClientServer, (self,), restart=restart, name=name)

    # -- sending ---------------------------------------------------------------------------------

    def _next_request_id(self) -> int:
        request_id = next(self._request_ids)
        if request_id > _MAX_REQUEST_ID:
            self._request_ids = itertools.count(2)
            request_id = 1
        return request_id

    async def _send(self, data: bytes) -> bool:
        try:
            await self.endpoint.send_to(data, self.relay)
        except (OSError, trio.ClosedResourceError) as exc:
            logger.debug("%s: nothing sent: %s", self, exc)
            return False
        self._sent += 1
        return True

    async def _send_control(self, frame: ControlFrame) -> bool:
        link = self._link
        if link is None:
            self._dropped += 1
            return False
        return await self._send(link.seal(frame))

    async def _send_data(self, session: int, payload: bytes) -> bool:
        link = self._link
        if link is None:
            self._dropped += 1
            return False
        return await self._send(link.seal_data(session, payload))

    async def _send_keepalive(self) -> None:
        echo = next(self._echoes)
        if len(self._pings) >= _MAX_PINGS:
            self._pings.pop(next(iter(self._pings)))
        self._pings[echo] = trio.current_time()
        self._keepalives += 1
        await self._send_control(Keepalive(echo))

    async def _close_session(self, session: RelaySession) -> None:
        """End ``session`` and tell the relay (which tells the peer), shielded and bounded:
        a session closed because its owner crashed must not stay open at the relay and the
        peer until their timeouts."""
        self._sessions.pop(session.id, None)
        session._end(Reason.NORMAL)
        with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_GRACE):
            await self._send_control(Close(session.id, Reason.NORMAL))

    # -- receiving -------------------------------------------------------------------------------

    async def _on_datagram(self, data: bytes, source: Address) -> None:
        if source != self.relay or not data:
            self._dropped += 1
            return
        first = data[0]
        if first == FrameType.DATA or first == FrameType.CONTROL:
            await self._on_sealed(data)
            return
        try:
            frame = decode(data)
        except FrameError:
            self._dropped += 1
            return
        inbox = self._handshake
        if inbox is None or isinstance(frame, Sealed):
            self._dropped += 1
            return
        try:
            inbox.send_nowait(frame)
        except trio.WouldBlock:
            self._dropped += 1

    async def _on_sealed(self, data: bytes) -> None:
        link = self._link
        if link is None:
            self._dropped += 1
            return
        try:
            frame = link.open(data)
        except FrameError:
            self._dropped += 1
            return
        if isinstance(frame, Verdict):
            self._dropped += 1
            return
        self._received += 1
        self._last_heard = trio.current_time()
        if isinstance(frame, Data):
            session = self._sessions.get(frame.session)
            if session is None:
                self._dropped += 1
            else:
                session._deliver(frame.payload)
            return
        await self._on_control(frame)

    async def _on_control(self, frame: ControlFrame) -> None:
        if isinstance(frame, Pong):
            self._on_pong(frame)
        elif isinstance(frame, RelayAccepted):
            await self._on_accepted(frame)
        elif isinstance(frame, RequestRefused):
            pending = self._pending.get(frame.request)
            if pending is not None and not pending.event.is_set():
                pending.result = RelayRefused(frame.reason, f"session to {pending.target.short()}")
                pending.event.set()
        elif isinstance(frame, DirectoryAnswer):
            waiting = self._queries.get(frame.request)
            if waiting is None:
                self._dropped += 1  # answered already (a retransmitted query), or given up
            else:
                with contextlib.suppress(trio.WouldBlock):
                    waiting.send_nowait(frame)
        elif isinstance(frame, PathChallenge):  # the relay checks our new address reaches us
            await self._send_control(PathResponse(frame.nonce))
        elif isinstance(frame, Close):
            if frame.session == 0:
                self._lose(frame.reason)
            else:
                session = self._sessions.pop(frame.session, None)
                if session is not None:
                    session._end(frame.reason)
        else:
            self._dropped += 1  # frames only a node sends

    def _on_pong(self, pong: Pong) -> None:
        self._ponged.set()
        self._ponged = trio.Event()
        sent = self._pings.pop(pong.echo, None)
        if sent is not None:
            sample = trio.current_time() - sent
            self.rtt = sample if self.rtt is None else self.rtt + _RTT_GAIN * (sample - self.rtt)
        self.load = pong.load
        registration = self.registration.value
        if registration is not None and registration.observed != pong.observed:
            logger.info("%s: the relay now sees this node at %s", self, pong.observed)
            self.registration.value = attrs.evolve(registration, observed=pong.observed)

    async def _on_accepted(self, accepted: RelayAccepted) -> None:
        known = self._sessions.get(accepted.session)
        if accepted.request == 0:  # another node opened a session to this one
            if known is None:
                session = self._new_session(accepted.session, accepted.peer, initiated=False)
                try:
                    self._incoming.send_nowait(session)
                except trio.WouldBlock:
                    logger.warning("%s: accept backlog full; refusing %r", self, session)
                    await self._close_session(session)
                    return
            await self._send_control(SessionAck(accepted.session))
            return
        pending = self._pending.get(accepted.request)
        if pending is not None and not pending.event.is_set():
            if known is None:
                known = self._new_session(accepted.session, accepted.peer, initiated=True)
            pending.result = known
            pending.event.set()
        elif known is None:  # an answer nobody waits for any more: free the relay's session
            await self._send_control(Close(accepted.session, Reason.NORMAL))

    def _new_session(self, session_id: int, peer: NodeId, *, initiated: bool) -> RelaySession:
        session = RelaySession(
            self, session_id, peer, initiated=initiated, buffer=self.config.session_buffer
        )
        self._sessions[session_id] = session
        return session

    # -- registration state ------------------------------------------------------------------------

    def _install(self, link: Link, relay_id: NodeId, registered: Registered) -> None:
        now = trio.current_time()
        renewal = self._link is not None
        self._link = link
        self.relay_id = relay_id
        self._last_heard = now
        self._lost = trio.Event()
        self._registrations += 1
        self.registration.value = RelayRegistration(
            relay_id, self.relay, registered.registration, registered.observed,
            float(registered.ttl), now,
        )  # fmt: skip
        logger.info(
            "%s: %s with relay %s as %s",
            self, "renewed" if renewal else "registered", relay_id.short(), registered.observed,
        )  # fmt: skip

    def _lose(self, reason: Reason) -> None:
        """The registration is gone: with it every session the relay held for this node."""
        if self._link is None:
            return
        logger.info("%s: registration ended: %s", self, reason.label)
        self._link = None
        self.last_close = reason
        self.registration.value = None
        self._lost.set()
        sessions, self._sessions = self._sessions, {}
        for session in sessions.values():
            session._end(reason)

    def _lose_silently(self) -> None:
        """No word from the relay: register again, keeping the sessions (the relay keys them by
        node id, so a new registration carries them on if the relay still has them)."""
        if self._link is None:
            return
        logger.info("%s: no answer from the relay; registering again", self)
        self._link = None
        self.registration.value = None
        self._lost.set()


class RelayClientServer(Actor):
    """Registers its :class:`RelayClient`, keeps the registration alive and reads the socket."""

    def __init__(self, client: RelayClient) -> None:
        self._client = client

    async def init(self) -> None:
        if self._client.receive:
            self.start_soon(self._read)
        self.start_soon(self._maintain)

    async def terminate(self, reason: object) -> None:
        client = self._client
        # leaving: free the relay's state, unless the next registration carries the sessions on
        if is_normal(reason) and client._link is not None and not client._handed_over:
            await client._send_control(Close(0, Reason.NORMAL))
            client._lose(Reason.NORMAL)

    async def _read(self) -> None:
        client = self._client
        endpoint = client.endpoint
        try:
            while True:  # in batches: a demux view is drained as fast as it is filled
                for data, source in await endpoint.receive_batch():
                    await client._on_datagram(data, source)
        except trio.ClosedResourceError:
            logger.warning("%s: its socket was closed", client)

    async def _maintain(self) -> None:
        client = self._client
        config = client.config
        backoff = config.retry_backoff
        while True:
            registered = await self._register()
            now = trio.current_time()
            current = client.registration.value
            if registered and current is not None:
                backoff = config.retry_backoff
                await self._keep_alive(current.registered_at + current.ttl * config.renew_fraction)
                continue
            delay = backoff * (0.5 + random.random())
            backoff = min(2 * backoff, config.max_backoff)
            if current is not None:  # a renewal failed; the registration still holds
                await self._keep_alive(now + delay)
            else:
                await trio.sleep(delay)

    async def _register(self) -> bool:
        """One round of the handshake; True once registered."""
        client = self._client
        config = client.config
        handshake = ClientHandshake(client.key, client.relay_id)
        inbox, frames = trio.open_memory_channel[HandshakeFrame](8)
        client._handshake = inbox
        try:
            for _ in range(config.handshake_attempts):
                await client._send(encode(handshake.hello()))
                with trio.move_on_after(config.handshake_timeout):
                    async for frame in frames:
                        if isinstance(frame, Challenge):
                            register = handshake.on_challenge(frame)
                            if register is not None:
                                await client._send(encode(register))
                        elif isinstance(frame, Registered):
                            link = handshake.on_registered(frame)
                            if link is not None and handshake.relay_id is not None:
                                client._install(link, handshake.relay_id, frame)
                                return True
                        elif isinstance(frame, Refused):
                            reason = handshake.on_refused(frame)
                            if reason is not None:
                                client.last_refusal = reason
                                logger.info("%s: relay refused: %s", client, reason.label)
                                return False
            return False
        finally:
            client._handshake = None

    async def _keep_alive(self, until: float) -> None:
        """KEEPALIVEs until ``until``, or until the registration is lost or expires."""
        client = self._client
        config = client.config
        lost = client._lost
        while not lost.is_set():
            now = trio.current_time()
            current = client.registration.value
            if current is None:
                return
            if now >= current.expires_at:
                client._lose(Reason.REGISTRATION_EXPIRED)
                return
            if now - client._last_heard >= config.liveness_timeout:
                client._lose_silently()
                return
            if now >= until:
                return
            await client._send_keepalive()
            with trio.move_on_after(min(config.keepalive_interval, until - now)):
                await lost.wait()


@asynccontextmanager
async def open_relay_client(
    client: RelayClient,
    name: str | None = None,
    registry: Registry | None = None,
    *,
    timeout: float | None = 10.0,
) -> AsyncIterator[RelayClient]:
    """Run ``client`` for the ``async with`` block, entered once it is registered.

    Raises :class:`RegistrationFailed` if it is not registered within ``timeout`` seconds
    (None: enter at once). Leaving the block ends the registration.
    """
    async with open_actor(RelayClientServer(client), name, registry):
        if timeout is not None:
            await client.wait_registered(timeout)
        yield client
