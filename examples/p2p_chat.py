"""Peer-to-peer chat: two nodes find each other by node id and talk over one connection.

One side listens (``system.connector.accept()``) and prints its node id; the other connects to
that id (``system.connector.connect(node_id)``). Every line typed is sent as one message,
every message received is printed, and a line is printed whenever the connection changes how
it travels: typically it starts ``relayed`` (through the gateway's relay) and becomes
``punched`` once a hole is punched through both NATs, without a message lost on the way.

On two machines behind NATs, with a gateway at 203.0.113.10::

    python examples/p2p_chat.py --gateway 203.0.113.10:3478                  # prints its id
    python examples/p2p_chat.py --gateway 203.0.113.10:3478 --connect NODE_ID

End the chat with Ctrl-D (end of input); the other side is told and stops too.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import AsyncIterable, AsyncIterator, Callable
from pathlib import Path

import trio

from macula_nat.cli.arguments import address_argument
from macula_nat.connection import Connection, ConnectionFailed
from macula_nat.dht.config import DhtConfig
from macula_nat.identity import NodeId, NodeKey
from macula_nat.system import NatConfig, NatSystem, open_nat_system


async def main(
    system: NatSystem,
    lines: AsyncIterable[str],
    peer: NodeId | str | None = None,
    *,
    emit: Callable[[str], None] = print,
) -> None:
    """Chat with ``peer`` (None: wait for someone to connect) until ``lines`` end or the
    peer leaves."""
    if peer is None:
        emit(f"waiting for a peer; my node id is {system.node_id.text()}")
        connection = await system.connector.accept()
    else:
        connection = await system.connector.connect(peer)
    emit(f"* chatting with {connection.peer_id.short()}")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_report_method, connection, emit)
        nursery.start_soon(_print_messages, connection, emit, nursery.cancel_scope)
        with contextlib.suppress(ConnectionFailed, trio.ClosedResourceError):  # peer gone
            async for line in lines:
                await connection.send_message(line.encode())
        nursery.cancel_scope.cancel()  # end of input (or the peer left): we are done
    await system.connector.disconnect(connection)


async def _report_method(connection: Connection, emit: Callable[[str], None]) -> None:
    """The method now, then each change (``method`` is a trio-util ``AsyncValue``)."""
    async for method in connection.method.eventual_values():
        emit(f"* connection is {method}")


async def _print_messages(
    connection: Connection, emit: Callable[[str], None], done: trio.CancelScope
) -> None:
    name = connection.peer_id.short()
    try:
        while True:
            message = await connection.receive_message()
            emit(f"{name}: {message.decode(errors='replace')}")
    except (ConnectionFailed, trio.ClosedResourceError):
        # the peer closed (or went away); once the node has seen the close it has also closed
        # its own end, so this side may hear of it as ClosedResourceError
        emit(f"* {name} left")
        done.cancel()


async def stdin_lines() -> AsyncIterator[str]:
    """Lines typed on standard input, until end of input."""
    while line := await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True):
        yield line.rstrip("\n")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
    parser.add_argument("--connect", metavar="NODE_ID", help="the peer's node id (default: wait)")
    parser.add_argument(
        "--key", type=Path, metavar="FILE", help="keep this node's id in FILE (created if missing)"
    )
    return parser


async def run(args: argparse.Namespace) -> None:
    """``main`` on the real network: join through the gateways, detect the NAT, chat."""
    bootstrap = args.bootstrap or [(ip, 3481) for ip, _ in args.gateway]
    config = NatConfig(
        observers=args.gateway,
        dht=DhtConfig(bootstrap=bootstrap, read_only=True),
        key=NodeKey.load_or_create(args.key) if args.key else None,
    )
    async with open_nat_system(config) as system:
        with trio.move_on_after(30) as waiting:  # the NAT detected, a home relay registered
            profile, _ = await system.wait_ready()
        if waiting.cancelled_caught:
            print("no gateway answered within 30 s")
            return
        print(f"* NAT detected: {profile.nat_type}")
        await main(system, stdin_lines(), args.connect)


if __name__ == "__main__":
    arguments = build_parser().parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(run, arguments)
