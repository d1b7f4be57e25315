"""Connection manager: stay connected to a set of peers, reconnecting when a connection drops.

Each peer gets a task that connects (``system.connector.connect(node_id)``), waits for the
connection to close (``await connection.wait_closed()``, whoever closed it) and connects
again, backing off exponentially while connections keep failing or dropping. A report task
prints each peer's method and round-trip time (``connection.info()``) periodically. At the end
(after ``--duration`` seconds, or Ctrl-C) every connection is closed
(``system.connector.disconnect(connection)``).

    python examples/connection_manager.py --gateway 203.0.113.10:3478 NODE_ID [NODE_ID ...]
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Sequence

import trio

from macula_nat.cli.observe import address_argument
from macula_nat.connection import Connection, ConnectionFailed
from macula_nat.dht.config import DhtConfig
from macula_nat.identity import NodeId
from macula_nat.system import NatConfig, NatSystem, open_nat_system
from macula_nat.traversal.errors import TraversalError

CONNECT_ERRORS = (TraversalError, ConnectionFailed)
"""What ``connect`` raises when a peer cannot be reached now."""


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
    connections: dict[NodeId, Connection] = {}
    try:
        async with trio.open_nursery() as nursery:
            for node in nodes:
                nursery.start_soon(_keep_connected, system, node, connections, backoff, emit)
            nursery.start_soon(_report, nodes, connections, report_every, emit)
            if duration is not None:
                await trio.sleep(duration)
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):  # also on Ctrl-C: close each connection properly
            for node, connection in list(connections.items()):
                await system.connector.disconnect(connection)
                emit(f"{node.short()}: disconnected")


async def _keep_connected(
    system: NatSystem,
    peer: NodeId,
    connections: dict[NodeId, Connection],
    backoff: tuple[float, float],
    emit: Callable[[str], None],
) -> None:
    """Connect to ``peer``, and again whenever that fails or the connection closes."""
    first, most = backoff
    delay = first
    while True:
        try:
            connection = await system.connector.connect(peer)
        except CONNECT_ERRORS as exc:
            reason = str(exc) or type(exc).__name__
            emit(f"{peer.short()}: cannot connect ({reason}); retrying in {delay:g} s")
        else:
            connections[peer] = connection
            emit(f"{peer.short()}: connected ({connection.method.value})")
            up_since = trio.current_time()
            await connection.wait_closed()
            del connections[peer]
            if trio.current_time() - up_since > most:
                delay = first  # it was up for a good while: start the backoff afresh
            emit(f"{peer.short()}: connection closed; reconnecting in {delay:g} s")
        await trio.sleep(delay)
        delay = min(2 * delay, most)


async def _report(
    peers: Sequence[NodeId],
    connections: dict[NodeId, Connection],
    every: float,
    emit: Callable[[str], None],
) -> None:
    while True:
        await trio.sleep(every)
        for peer in peers:
            connection = connections.get(peer)
            if connection is None:
                emit(f"{peer.short()}: down")
            else:
                info = connection.info()
                emit(f"{peer.short()}: {info.connection_method}, rtt {info.rtt * 1000:.0f} ms")


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
