"""``macula-nat listen`` and ``macula-nat connect NODE_ID``: a node on a real network.

Both join through gateways: ``--observer`` (their STUN observers, for NAT detection) and
``--bootstrap`` (their DHT ports: the directory where records and relays are found). ``listen``
prints the node id and accepts connections, from any number of peers at once; ``connect``
reaches a node by id. Either way, each line read from standard input is sent as a message (by
``listen``, to every connected peer), each message received is printed under its sender's name,
and so is every change of a connection's method (relayed -> punched ...). ``connect`` ends at
end of input, either at Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence

import trio

from macula_nat.actors import StartFailed
from macula_nat.cli.running import print_line, run_until_interrupted
from macula_nat.connection import Connection, ConnectionFailed
from macula_nat.dht.config import DhtConfig
from macula_nat.identity import KeyFileError, NodeId, NodeKey
from macula_nat.net.address import ANY_IPV4, ANY_IPV6, Address, any_address, ip_version
from macula_nat.net.endpoint import UdpStack
from macula_nat.portmap.client import PortMapConfig
from macula_nat.relay.registry import RegistryConfig, TcpFallback
from macula_nat.system import NatConfig, NatSystem, open_nat_system
from macula_nat.traversal.errors import TraversalError

__all__ = [
    "chat",
    "connect_main",
    "listen_main",
    "node_config",
    "report",
    "run_connect",
    "run_listen",
]

logger = logging.getLogger(__name__)

Emit = Callable[[str], None]


def node_config(args: argparse.Namespace, key: NodeKey, stack: UdpStack | None = None) -> NatConfig:
    """The node the parsed ``args`` describe (read-only in the DHT until its NAT profile says
    it is reachable from anywhere: it may sit behind a NAT).
    Its DHT socket speaks the IP version of the first bootstrap address (BEP 32: one DHT per
    version; a name or ``public``: IPv4); its own socket is ``--listen``, for both versions
    with ``--dual-stack``."""
    dht_listen = (any_address(_bootstrap_version(args.bootstrap[0])), 0)
    listen = args.listen
    if args.dual_stack and listen[0] == ANY_IPV4:  # the default: the IPv6 wildcard, same port
        listen = (ANY_IPV6, listen[1])
    return NatConfig(
        stack=stack,
        observers=tuple(args.observers),
        dht=DhtConfig(bootstrap=tuple(args.bootstrap), listen=dht_listen),
        landmarks=tuple(args.landmarks),
        key=key,
        listen=listen,
        dual_stack=args.dual_stack,
        relays=RegistryConfig(tcp_fallback=tcp_fallback(args.tcp_fallback)),
        port_mapping=port_mapping(args.port_mapping),
    )


def tcp_fallback(relays: list[Address] | None) -> TcpFallback | None:
    """``--tcp-fallback [RELAY ...]``: None when not given, else relays tried over TCP."""
    return None if relays is None else TcpFallback(relays=tuple(relays))


def _bootstrap_version(bootstrap: tuple[str, int] | str) -> int:
    """The IP version of a ``--bootstrap`` entry: its IP's, or 4 for a name or ``public``
    (the public routers and a gateway's name are reached over IPv4 first)."""
    if isinstance(bootstrap, str):
        return 4
    try:
        return ip_version(bootstrap[0])
    except ValueError:
        return 4


def port_mapping(protocols: list[str] | None) -> PortMapConfig | None:
    """``--port-mapping``: absent, off; given without protocols, all three; else those named."""
    if protocols is None:
        return None
    return PortMapConfig(protocols=protocols) if protocols else PortMapConfig()


async def chat(connection: Connection, lines: AsyncIterable[str], emit: Emit) -> None:
    """Send each of ``lines``; print what arrives and each change of method; until the peer
    goes, or the lines end (then close the connection)."""
    emit(f"connected to {connection.peer_id.short()} ({connection.info().connection_method})")
    async with trio.open_nursery() as nursery:

        async def report_then_stop() -> None:
            await report(connection, emit)
            nursery.cancel_scope.cancel()

        nursery.start_soon(report_then_stop)
        with contextlib.suppress(ConnectionFailed, trio.ClosedResourceError):
            async for line in lines:
                await connection.send_message(line.encode())
        await connection.aclose()
        nursery.cancel_scope.cancel()


async def report(connection: Connection, emit: Emit) -> None:
    """Print what ``connection`` receives, and each change of its method, until the peer goes."""
    peer = connection.peer_id.short()

    async def report_methods() -> None:
        async for method in connection.method.transitions():
            emit(f"[{peer}: now {method[0]}]")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(report_methods)
        try:
            while True:
                message = await connection.receive_message()
                emit(f"{peer}> {message.decode(errors='replace')}")
        except (ConnectionFailed, trio.ClosedResourceError) as exc:
            emit(f"[{peer}: connection ended: {exc}]")
        nursery.cancel_scope.cancel()


async def _ready(system: NatSystem, emit: Emit) -> None:
    profile, home = await system.wait_ready()
    emit(f"node {system.node_id.text()}")
    emit(f"NAT: {profile.nat_type}, public address {profile.public_ip}:{profile.public_port}")
    if system.detector6 is not None:  # a dual-stack node's IPv6 side, classified meanwhile
        with trio.move_on_after(1.5 * system.config.detect_timeout + 1.0):  # a run's bound
            await system.detector6.profile.wait_value(lambda p: p is not None)
        six = system.detector6.profile.value
        if six is None:
            emit("IPv6: not classified yet")
        else:
            emit(f"IPv6: {six.nat_type}, public address [{six.public_ip}]:{six.public_port}")
    emit(f"home relay {home.endpoint[0]}:{home.endpoint[1]} ({home.latency_ms:.0f} ms)")


async def report_port_mapping(system: NatSystem, emit: Emit) -> None:
    """Print the router's port mapping each time it comes, moves or goes (the mapper works
    beside detection, so it may come after the node is ready), until cancelled."""
    shown: Address | None = None
    async for profile in system.detector.profile.eventual_values():
        if profile is None or profile.mapped == shown:
            continue
        shown = profile.mapped
        if shown is None:
            emit("port mapping gone")
        else:
            emit(f"port mapping {shown[0]}:{shown[1]} (the router forwards it to this node)")


async def listen_main(
    config: NatConfig,
    lines: AsyncIterable[str],
    emit: Emit,
    *,
    targets: Sequence[NodeId] = (),
    timeout: float = 15.0,
    task_status: trio.TaskStatus[NatSystem] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a node and chat with every peer that connects, all at once, until cancelled: what
    each sends is printed under its name, and each line read goes to every connected peer (a
    line read while nobody is connected waits for the next peer). Once ready it also connects
    to each of ``targets`` (each within ``timeout``; one that fails is said and left), and
    chats with them the same way."""
    async with open_nat_system(config) as system, trio.open_nursery() as nursery:
        peers: set[Connection] = set()
        joined = trio.lowlevel.ParkingLot()

        async def send_lines() -> None:
            async for line in lines:
                while not peers:
                    await joined.park()
                for connection in list(peers):
                    with contextlib.suppress(ConnectionFailed, trio.ClosedResourceError):
                        await connection.send_message(line.encode())

        async def serve(connection: Connection) -> None:
            peer = connection.peer_id.short()
            emit(f"connected to {peer} ({connection.info().connection_method})")
            peers.add(connection)
            joined.unpark_all()
            try:
                await report(connection, emit)
            finally:
                peers.discard(connection)
                await connection.aclose()

        async def reach(target: NodeId) -> None:
            try:
                connection = await system.connector.connect(target, timeout=timeout)
            except (TraversalError, ConnectionFailed) as exc:
                emit(f"could not connect to {target.short()}: {exc}")
            else:
                await serve(connection)

        nursery.start_soon(send_lines)
        await _ready(system, emit)
        if config.port_mapping is not None:
            nursery.start_soon(report_port_mapping, system, emit)
        for target in targets:
            nursery.start_soon(reach, target)
        emit("waiting for connections")
        task_status.started(system)
        while True:
            nursery.start_soon(serve, await system.connector.accept())


async def connect_main(
    config: NatConfig,
    target: NodeId,
    timeout: float,
    lines: AsyncIterable[str],
    emit: Emit,
) -> int:
    """Run a node, connect to ``target`` and chat; the exit status (1: no connection)."""
    async with open_nat_system(config) as system:
        await _ready(system, emit)
        try:
            connection = await system.connector.connect(target, timeout=timeout)
        except (TraversalError, ConnectionFailed) as exc:
            emit(f"could not connect to {target.short()}: {exc}")
            return 1
        await chat(connection, lines, emit)
    return 0


async def stdin_lines() -> AsyncIterator[str]:
    """Standard input, line by line, without blocking the event loop."""
    stream = trio.lowlevel.FdStream(os.dup(0))
    buffer = b""
    async with stream:
        while chunk := await stream.receive_some():
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            for line in complete:
                yield line.decode(errors="replace")
    if buffer:
        yield buffer.decode(errors="replace")


def _key(args: argparse.Namespace) -> NodeKey:
    return NodeKey.load_or_create(args.key) if args.key is not None else NodeKey.generate()


def run_listen(args: argparse.Namespace) -> int:
    try:
        config = node_config(args, _key(args))
    except (ValueError, KeyFileError, OSError) as exc:
        logger.error("node not started: %s", exc)
        return 1
    main = functools.partial(
        listen_main, config, stdin_lines(), print_line, targets=args.targets, timeout=args.timeout
    )
    return run_until_interrupted(main, "node", (StartFailed, ValueError, OSError))


def run_connect(args: argparse.Namespace) -> int:
    try:
        config = node_config(args, _key(args))
    except (ValueError, KeyFileError, OSError) as exc:
        logger.error("node not started: %s", exc)
        return 1
    status: list[int] = []

    async def main() -> None:
        lines = stdin_lines()
        status.append(await connect_main(config, args.target, args.timeout, lines, print_line))

    failed = run_until_interrupted(main, "node", (StartFailed, ValueError, OSError))
    return failed or (status[0] if status else 0)
