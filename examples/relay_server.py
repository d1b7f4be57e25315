"""Run a relay server: a gateway embedded in your own Trio program.

A gateway is what a public node runs: a STUN observer (nodes detect their NAT against it), a
relay (nodes that cannot reach each other directly talk through it), a Mainline DHT node and a
relay registry that announces the relay through the DHT. ``macula-nat gateway`` runs one as a
command; this example shows embedding it instead:

* a :class:`~macula_nat.GatewayConfig` says where it listens, the relay's session limits
  and timeouts, and its ``on_session_start`` / ``on_session_end`` callbacks (each gets a
  :class:`~macula_nat.relay.SessionInfo`); ``gateway.enable()`` applies them before the tree
  starts, so no session is missed;
* the gateway's supervision tree runs in a nursery of ours (``nursery.start(run_actor, ...)``);
* the relay's statistics are printed periodically.

Run it on a public host (two IPs for a full RFC 5780 observer)::

    python examples/relay_server.py --listen 203.0.113.10:3478 --alt 203.0.113.11:3479

which puts the relay on port 3480 and the DHT node on 3481.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
from collections.abc import Callable

import attrs
import trio

from macula_nat.actors import run_actor
from macula_nat.cli.arguments import address_argument
from macula_nat.gateway import Gateway, GatewayConfig
from macula_nat.identity import NodeKey
from macula_nat.net import RealUdpStack, UdpStack
from macula_nat.net.address import is_unspecified
from macula_nat.relay import MIB, SessionInfo


async def main(
    config: GatewayConfig,
    *,
    key: NodeKey | None = None,
    stack: UdpStack | None = None,
    session_timeout: float = 1800.0,
    stats_interval: float = 60.0,
    emit: Callable[[str], None] = print,
    task_status: trio.TaskStatus[Gateway] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the gateway ``config`` describes until cancelled (``nursery.start`` reports it)."""
    if stack is None:  # real sockets, on the configured IPs when they are specific
        addresses = [config.listen] + ([config.alternate] if config.alternate else [])
        stack = RealUdpStack([ip for ip, _ in addresses if not is_unspecified(ip)] or None)

    def session_started(session: SessionInfo) -> None:
        emit(f"session start: {session.peer_a.short()} -> {session.peer_b.short()}")

    def session_ended(session: SessionInfo) -> None:
        emit(
            f"session end:   {session.peer_a.short()} -> {session.peer_b.short()} "
            f"({session.bytes_transferred} bytes relayed, {session.reason})"
        )

    config = attrs.evolve(
        config,
        session_timeout=session_timeout,
        on_session_start=session_started,
        on_session_end=session_ended,
    )
    gateway = Gateway(config, stack, key or NodeKey.generate())
    await gateway.enable()  # the config's limits and callbacks
    async with trio.open_nursery() as nursery:
        await nursery.start(run_actor, gateway.supervisor())
        emit(
            f"gateway {gateway.key.node_id.short()}: STUN observer {_show(config.listen)}, "
            f"relay {_show(config.relay_address)}, DHT node {_show(config.dht_address)}"
        )
        task_status.started(gateway)
        while True:
            await trio.sleep(stats_interval)
            s = gateway.relay.statistics()
            emit(
                f"stats: {s.registrations} nodes registered, {s.sessions} sessions open "
                f"({s.sessions_opened} opened, {s.sessions_ended} ended), "
                f"{s.bytes_relayed} bytes relayed, {s.drops.total} datagrams dropped"
            )


def _show(address: tuple[str, int]) -> str:
    ip, port = address
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--listen",
        type=address_argument,
        default=("0.0.0.0", 3478),
        metavar="IP:PORT",
        help="the STUN observer's address; the relay and DHT node use the same IP "
        "(default: 0.0.0.0:3478)",
    )
    parser.add_argument(
        "--alt",
        type=address_argument,
        metavar="IP:PORT",
        help="the observer's alternate address (another IP and port): a full RFC 5780 server",
    )
    parser.add_argument("--relay-port", type=int, help="default: after the observer's ports")
    parser.add_argument("--dht-port", type=int, help="default: after the relay's port")
    parser.add_argument(
        "--bootstrap",
        type=address_argument,
        nargs="*",
        default=[],
        metavar="IP:PORT",
        help="other gateways' DHT nodes to join through",
    )
    parser.add_argument("--max-sessions", type=int, default=100, help="default: 100")
    parser.add_argument(
        "--bandwidth",
        type=float,
        default=float(MIB),
        metavar="BYTES",
        help="each session's limit in bytes a second (default: 1 MiB)",
    )
    parser.add_argument(
        "--stats-interval", type=float, default=60.0, metavar="S", help="default: 60 s"
    )
    return parser


def config_from_args(args: argparse.Namespace) -> GatewayConfig:
    return GatewayConfig(
        listen=args.listen,
        alternate=args.alt,
        relay_port=args.relay_port,
        dht_port=args.dht_port,
        bootstrap=args.bootstrap,
        max_sessions=args.max_sessions,
        bandwidth_limit=args.bandwidth,
    )


if __name__ == "__main__":
    parser = build_parser()
    arguments = parser.parse_args()
    try:
        gateway_config = config_from_args(arguments)
    except ValueError as exc:  # e.g. the relay port is one of the observer's
        parser.error(str(exc))
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(functools.partial(main, gateway_config, stats_interval=arguments.stats_interval))
