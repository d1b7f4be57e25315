"""The gateway lab test's processes, run in lab namespaces: ``python -m tests.lab.lab_node``.

Each prints JSON lines on stdout (one object per line, with an ``event`` key) and reads its
instructions, one line each, on stdin; see ``tests/lab/gateway_support.py`` for the driver.

``gateway``  a gateway (:func:`macula_nat.gateway.open_gateway`) with a chosen per-session
             bandwidth limit; prints ``ready`` with its node id and addresses, then runs.
``node``     a node behind NAT: a read-only DHT node bootstrapped to the gateway's, a home relay
             through the relay registry (which publishes the record), then, given the peer's
             node id on stdin: resolves the peer's record and opens (``--initiator``) or
             accepts a relay session, over which it runs ``--mode echo`` or ``--mode flood``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from typing import Any

import trio

from macula_nat.cli.arguments import address_argument
from macula_nat.dht.config import DhtConfig
from macula_nat.dht.node import open_dht_node
from macula_nat.directory.mainline import MainlineDirectory
from macula_nat.gateway import GatewayConfig, open_gateway
from macula_nat.identity import NodeId, NodeKey
from macula_nat.net.address import Address
from macula_nat.net.real import RealUdpStack
from macula_nat.relay.client_session import RelaySession
from macula_nat.relay.errors import SessionClosed
from macula_nat.relay.registry import RegistryConfig, RelayRegistry, open_relay_registry

STEP_TIMEOUT_S = 30.0
"""Bound on every step that waits for the network (the test bounds the whole run too)."""
ECHO_ATTEMPTS = 5
ECHO_WAIT_S = 1.0


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


async def read_line() -> str:
    line: str = await trio.to_thread.run_sync(sys.stdin.readline)
    if not line:
        raise SystemExit("stdin closed")
    return line.strip()


def payload(index: int, size: int, tag: bytes) -> bytes:
    """Datagram ``index`` of a stream: its index, then bytes derived from it (so that any
    corruption or reordering inside a datagram shows)."""
    head = tag + index.to_bytes(4, "big")
    body = b""
    counter = 0
    while len(head) + len(body) < size:
        body += hashlib.sha256(head + counter.to_bytes(4, "big")).digest()
        counter += 1
    return (head + body)[:size]


def echo_of(data: bytes) -> bytes:
    return b"echo:" + data[::-1]


# -- gateway and plain DHT node ------------------------------------------------------------------


async def run_gateway(args: argparse.Namespace) -> None:
    config = GatewayConfig(
        listen=args.listen,
        alternate=args.alt,
        bootstrap=args.bootstrap,
        bandwidth_limit=args.bandwidth_limit,
        registry=RegistryConfig(retry_interval=1.0),
    )
    async with open_gateway(config) as gateway:
        emit(
            "ready",
            node_id=gateway.key.node_id.text(),
            relay=list(config.relay_address),
            dht=list(config.dht_address),
        )
        await trio.sleep_forever()


# -- a node behind NAT ---------------------------------------------------------------------------


async def resolve_peer(directory: MainlineDirectory, peer: str) -> Address:
    """The peer's home relay from its record, once the record is there."""
    with trio.fail_after(STEP_TIMEOUT_S):
        while True:
            record = await directory.resolve_record(peer)
            if record is not None and record.home_relay is not None:
                return record.home_relay
            await trio.sleep(0.5)


async def echo_initiator(session: RelaySession, count: int, size: int) -> dict[str, Any]:
    """Send ``count`` datagrams, each until its echo comes back intact."""
    intact = retransmits = 0
    for index in range(count):
        data = payload(index, size, b"A")
        for attempt in range(ECHO_ATTEMPTS):
            await session.send(data)
            with trio.move_on_after(ECHO_WAIT_S):
                while await session.receive() != echo_of(data):
                    pass  # a late echo of an earlier retransmission
                intact += 1
                break
            retransmits += attempt < ECHO_ATTEMPTS - 1
        else:
            return {"intact": intact, "retransmits": retransmits, "failed_at": index}
    return {"intact": intact, "retransmits": retransmits}


async def echo_responder(session: RelaySession, count: int, size: int) -> dict[str, Any]:
    """Echo every datagram; count the distinct ones that arrived intact."""
    expected = {payload(index, size, b"A") for index in range(count)}
    seen: set[bytes] = set()
    corrupt = 0
    with trio.move_on_after(STEP_TIMEOUT_S):
        async for data in session:
            if data in expected:
                seen.add(data)
                await session.send(echo_of(data))
            else:
                corrupt += 1
    return {"intact": len(seen), "corrupt": corrupt}


async def flood_sender(
    session: RelaySession, rate: float, seconds: float, size: int
) -> dict[str, Any]:
    """Send ``size``-byte datagrams at ``rate`` bytes a second for ``seconds``."""
    per_tick, tick = 8, 8 * size / rate
    sent = 0
    start = trio.current_time()
    while trio.current_time() - start < seconds:
        for _ in range(per_tick):
            await session.send(payload(sent, size, b"F"))
            sent += 1
        await trio.sleep_until(start + (sent // per_tick) * tick)
    elapsed = trio.current_time() - start
    return {"sent": sent, "sent_bytes": sent * size, "seconds": elapsed}


async def flood_receiver(session: RelaySession, size: int, quiet_s: float = 1.0) -> dict[str, Any]:
    """Arrival times and sizes until ``quiet_s`` without a datagram (after the first)."""
    arrivals: list[tuple[float, int]] = []
    corrupt = 0
    with trio.fail_after(STEP_TIMEOUT_S):
        first = await session.receive()
    arrivals.append((time.monotonic(), len(first)))
    while True:
        with trio.move_on_after(quiet_s) as quiet:
            try:
                data = await session.receive()
            except SessionClosed:  # the sender is done (after what it sent)
                break
        if quiet.cancelled_caught:
            break
        index = int.from_bytes(data[1:5], "big")
        if data != payload(index, size, b"F"):
            corrupt += 1
        arrivals.append((time.monotonic(), len(data)))
    t0 = arrivals[0][0]
    return {"arrivals": [[round(t - t0, 6), n] for t, n in arrivals], "corrupt": corrupt}


async def run_node(args: argparse.Namespace) -> None:
    stack = RealUdpStack()
    key = NodeKey.generate()
    dht_config = DhtConfig(read_only=True, bootstrap=[args.dht], query_timeout=1.0)
    async with open_dht_node(stack, dht_config) as dht:
        directory = MainlineDirectory(dht, key)
        registry = RelayRegistry(
            directory, stack, key, config=RegistryConfig(retry_interval=1.0, probe_window=0.3)
        )
        async with open_relay_registry(registry):
            with trio.fail_after(STEP_TIMEOUT_S):
                await registry.home.wait_value(lambda home: home is not None)
            home = registry.home.value
            assert home is not None
            emit("home", node_id=key.node_id.text(), home=list(home.endpoint))

            peer = await read_line()
            peer_home = await resolve_peer(directory, peer)
            emit("resolved", peer=peer, home_relay=list(peer_home))

            client = registry.client
            assert client is not None
            with trio.fail_after(STEP_TIMEOUT_S):
                if args.initiator:
                    session = await client.request_relay(NodeId.from_text(peer))
                else:
                    session = await client.accept()
            emit("session", id=session.id)
            async with session:
                if args.mode == "echo":
                    if args.initiator:
                        result = await echo_initiator(session, args.count, args.size)
                    else:
                        result = await echo_responder(session, args.count, args.size)
                elif args.initiator:
                    await read_line()  # "go": the receiver is waiting
                    result = await flood_sender(session, args.rate, args.seconds, args.size)
                else:
                    emit("receiving")
                    result = await flood_receiver(session, args.size)
            emit("result", **result)
            await read_line()  # "exit": stay registered until the test is done with both


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="lab_node")
    commands = parser.add_subparsers(dest="command", required=True)
    gateway = commands.add_parser("gateway")
    gateway.add_argument("--listen", type=address_argument, required=True)
    gateway.add_argument("--alt", type=address_argument)
    gateway.add_argument("--bootstrap", type=address_argument, nargs="*", default=[])
    gateway.add_argument("--bandwidth-limit", type=float, default=1024.0 * 1024)
    node = commands.add_parser("node")
    node.add_argument("--dht", type=address_argument, required=True)
    node.add_argument("--initiator", action="store_true")
    node.add_argument("--mode", choices=("echo", "flood"), default="echo")
    node.add_argument("--count", type=int, default=20)
    node.add_argument("--size", type=int, default=1000)
    node.add_argument("--rate", type=float, default=512 * 1024.0)
    node.add_argument("--seconds", type=float, default=3.0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(sys.argv[1:] if argv is None else argv)
    runner = {"gateway": run_gateway, "node": run_node}[args.command]
    trio.run(runner, args)


if __name__ == "__main__":
    main()
