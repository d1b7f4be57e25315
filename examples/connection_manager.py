"""Connection manager: stay connected to a set of peers, reconnecting when a connection drops.

The guide's Example 5, a gen_server, ported as an actor (:class:`ConnectionManager`). Its API:
calls ``Manage(peer)`` (connect and stay connected), ``Status()`` (each peer's method and RTT,
from ``connection.info()``) and ``DisconnectAll()``; a cast ``Forget(peer)``. Connecting and
waiting for a connection to close (``await connection.wait_closed()``, whoever closed it) run in
the actor's tasks, which report back to its mailbox; the actor keeps the state and schedules
reconnections with ``send_after``, backing off exponentially while connections keep failing or
dropping. A report of each peer's method and RTT is printed periodically. At the end (after
``--duration`` seconds, or Ctrl-C) every connection is closed (``connector.disconnect``).

    python examples/connection_manager.py --gateway 203.0.113.10:3478 NODE_ID [NODE_ID ...]
"""

from __future__ import annotations

import argparse
import contextlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import trio

from macula_nat import (
    Actor,
    ActorRef,
    Connection,
    ConnectionFailed,
    Connector,
    DhtConfig,
    NatConfig,
    NatSystem,
    NodeId,
    TraversalError,
    open_actor,
    open_nat_system,
)
from macula_nat.actors import Caller, Stop
from macula_nat.cli.arguments import address_argument

CONNECT_ERRORS = (TraversalError, ConnectionFailed)
"""What ``connect`` raises when a peer cannot be reached now."""


@attrs.frozen
class Manage:
    """Call: connect to ``peer`` and stay connected."""

    peer: NodeId


@attrs.frozen
class Forget:
    """Cast: stop managing ``peer`` and close its connection."""

    peer: NodeId


@attrs.frozen
class Status:
    """Call: ``{peer: (method, rtt) or None}`` for every managed peer."""


@attrs.frozen
class DisconnectAll:
    """Call: close every connection and stop managing the peers."""


@attrs.frozen(eq=False)
class _Connected:
    peer: NodeId
    connection: Connection


@attrs.frozen
class _Failed:
    peer: NodeId
    reason: str


@attrs.frozen(eq=False)
class _Closed:
    peer: NodeId
    connection: Connection


@attrs.frozen
class _Retry:
    peer: NodeId


class _Report:
    """The periodic report timer."""


@attrs.define
class _Peer:
    connection: Connection | None = None
    delay: float = 0.0
    up_since: float = 0.0


class ConnectionManager(Actor):
    """Keeps connections to its managed peers through ``connector``."""

    def __init__(
        self,
        connector: Connector,
        *,
        report_every: float = 30.0,
        backoff: tuple[float, float] = (1.0, 60.0),
        emit: Callable[[str], None] = print,
    ) -> None:
        self.connector = connector
        self.report_every = report_every
        self.first, self.most = backoff
        self.emit = emit
        self.peers: dict[NodeId, _Peer] = {}

    async def init(self) -> None:
        self.send_after(self.report_every, _Report())

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        if isinstance(message, Manage):
            if message.peer not in self.peers:
                self.peers[message.peer] = _Peer(delay=self.first)
                self.start_soon(self._connect, self.ref, message.peer)
            return None
        if isinstance(message, Status):
            return {
                peer: None
                if state.connection is None
                else (state.connection.info().connection_method, state.connection.info().rtt)
                for peer, state in self.peers.items()
            }
        if isinstance(message, DisconnectAll):
            peers, self.peers = self.peers, {}
            for peer, state in peers.items():
                if state.connection is not None:
                    await self.connector.disconnect(state.connection)
                    self.emit(f"{peer.short()}: disconnected")
            return None
        return await super().handle_call(message, caller)

    async def handle_cast(self, message: Any) -> Stop | None:
        if isinstance(message, Forget):
            state = self.peers.pop(message.peer, None)
            if state is not None and state.connection is not None:
                await self.connector.disconnect(state.connection)
                self.emit(f"{message.peer.short()}: disconnected")
            return None
        if isinstance(message, _Connected | _Failed | _Closed):
            await self._report_back(message)
            return None
        return await super().handle_cast(message)

    async def _report_back(self, message: _Connected | _Failed | _Closed) -> None:
        """What a connecting or watching task found, applied to the peer's state."""
        state = self.peers.get(message.peer)
        if isinstance(message, _Connected):
            if state is None:  # forgotten meanwhile
                await self.connector.disconnect(message.connection)
                return
            state.connection, state.up_since = message.connection, trio.current_time()
            self.emit(f"{message.peer.short()}: connected ({message.connection.method.value})")
            self.start_soon(self._watch, self.ref, message.peer, message.connection)
            return
        if isinstance(message, _Failed):
            if state is not None:
                self.emit(
                    f"{message.peer.short()}: cannot connect ({message.reason}); "
                    f"retrying in {state.delay:g} s"
                )
                self._retry_later(message.peer, state)
            return
        if isinstance(message, _Closed):
            if state is not None and state.connection is message.connection:
                state.connection = None
                if trio.current_time() - state.up_since > self.most:
                    state.delay = self.first  # it was up for a good while: back off afresh
                self.emit(
                    f"{message.peer.short()}: connection closed; reconnecting in {state.delay:g} s"
                )
                self._retry_later(message.peer, state)
            return

    async def handle_info(self, message: Any) -> Stop | None:
        if isinstance(message, _Retry):
            if message.peer in self.peers:
                self.start_soon(self._connect, self.ref, message.peer)
            return None
        if isinstance(message, _Report):
            for peer, state in self.peers.items():
                if state.connection is None:
                    self.emit(f"{peer.short()}: down")
                else:
                    info = state.connection.info()
                    rtt = info.rtt * 1000
                    self.emit(f"{peer.short()}: {info.connection_method}, rtt {rtt:.0f} ms")
            self.send_after(self.report_every, _Report())
            return None
        return await super().handle_info(message)

    def _retry_later(self, peer: NodeId, state: _Peer) -> None:
        self.send_after(state.delay, _Retry(peer))
        state.delay = min(2 * state.delay, self.most)

    async def _connect(self, me: ActorRef, peer: NodeId) -> None:
        try:
            connection = await self.connector.connect(peer)
        except CONNECT_ERRORS as exc:
            me.cast(_Failed(peer, str(exc) or type(exc).__name__))
        else:
            me.cast(_Connected(peer, connection))

    @staticmethod
    async def _watch(me: ActorRef, peer: NodeId, connection: Connection) -> None:
        await connection.wait_closed()
        me.cast(_Closed(peer, connection))


async def main(
    system: NatSystem,
    peers: Sequence[NodeId | str],
    *,
    duration: float | None = None,
    report_every: float = 30.0,
    backoff: tuple[float, float] = (1.0, 60.0),
    emit: Callable[[str], None] = print,
) -> None:
    """Keep ``system`` connected to ``peers`` for ``duration`` seconds (None: until
    cancelled), then disconnect from all of them."""
    nodes = [peer if isinstance(peer, NodeId) else NodeId.from_text(peer) for peer in peers]
    manager = ConnectionManager(
        system.connector, report_every=report_every, backoff=backoff, emit=emit
    )
    async with open_actor(manager) as ref:
        try:
            for node in nodes:
                await ref.call(Manage(node))
            await trio.sleep(math.inf if duration is None else duration)
        finally:
            with trio.CancelScope(shield=True):  # also on Ctrl-C: close each connection properly
                await ref.call(DisconnectAll(), 30.0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("peers", nargs="+", metavar="NODE_ID", help="the peers to connect to")
    parser.add_argument(
        "--gateway",
        type=address_argument,
        action="append",
        required=True,
        metavar="IP:PORT",
        help="a gateway's STUN observer, e.g. 203.0.113.10:3478 (repeat for more)",
    )
    parser.add_argument(
        "--bootstrap",
        type=address_argument,
        action="append",
        metavar="IP:PORT",
        help="a DHT node to join through (default: port 3481 on each gateway's IP)",
    )
    parser.add_argument(
        "--duration", type=float, metavar="S", help="stop after S seconds (default: Ctrl-C)"
    )
    parser.add_argument("--report", type=float, default=30.0, metavar="S", help="default: 30 s")
    return parser


async def run(args: argparse.Namespace) -> None:
    """``main`` on the real network: join through the gateways, detect the NAT, connect."""
    bootstrap = args.bootstrap or [(ip, 3481) for ip, _ in args.gateway]
    config = NatConfig(observers=args.gateway, dht=DhtConfig(bootstrap=bootstrap, read_only=True))
    async with open_nat_system(config) as system:
        with trio.move_on_after(30) as waiting:  # the NAT detected, a home relay registered
            await system.wait_ready()
        if waiting.cancelled_caught:
            print("no gateway answered within 30 s")
            return
        await main(system, args.peers, duration=args.duration, report_every=args.report)


if __name__ == "__main__":
    arguments = build_parser().parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(run, arguments)
