"""The relay-over-TCP lab test's processes: ``python -m tests.lab.relay_tcp_node``.

JSON lines on stdout (an ``event`` key each), instructions on stdin, as ``tests.lab.lab_node``
(driven with ``tests.lab.gateway_support.LabProcess``):

``relay IP:PORT``  a relay on UDP and TCP/TLS at that address; prints ``ready`` with its id.
``node IP:PORT RELAY_ID tcp|udp``  registers with the relay (over a TCP/TLS link, or UDP),
    prints ``registered`` (its node id, how long it took); then reads ``accept`` (the next
    session another node opens), ``connect NODE_ID``, ``send TEXT`` (on the session; what
    arrives is printed as ``received``), ``udp N`` (register over UDP, up to N attempts of
    ``UDP_ATTEMPT_S`` each: prints ``udp_registered`` with the time it took, or ``udp_failed``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import trio

from macula_nat.cli.arguments import address_argument
from macula_nat.identity import NodeId, NodeKey
from macula_nat.net.address import Address
from macula_nat.net.real import RealUdpStack
from macula_nat.relay import (
    ClientConfig,
    RegistrationFailed,
    RelayClient,
    RelayNode,
    RelaySession,
    TcpRelayConfig,
    open_relay,
    open_relay_client,
    open_tcp_relay_endpoint,
)

STEP_TIMEOUT_S = 70.0
UDP_ATTEMPT_S = 1.0
UDP_ATTEMPTS = 60


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


async def read_line() -> str:
    line: str = await trio.to_thread.run_sync(sys.stdin.readline)
    if not line:
        raise SystemExit("stdin closed")
    return line.strip()


async def run_relay(listen: Address) -> None:
    relay = RelayNode(RealUdpStack([listen[0]]), listen, NodeKey.generate(), tcp=TcpRelayConfig())
    async with open_relay(relay):
        await relay.enable()
        emit("ready", relay_id=relay.node_id.text(), tcp=list(relay.tcp_address or ()))
        await trio.sleep_forever()


async def print_received(session: RelaySession) -> None:
    async for data in session:
        emit("received", data=data.decode(errors="replace"))


async def run_node(relay: Address, relay_id: NodeId, over: str) -> None:
    key = NodeKey.generate()
    started = time.monotonic()
    async with trio.open_nursery() as nursery:
        with trio.fail_after(STEP_TIMEOUT_S):
            if over == "tcp":
                endpoint = await nursery.start(_hold_tcp, relay)
            else:
                endpoint = await RealUdpStack().bind()
            client = RelayClient(endpoint, relay, key, relay_id)
            await nursery.start(_hold_client, client)
        emit("registered", node=key.node_id.text(), over=over,
             took=round(time.monotonic() - started, 3))  # fmt: skip
        session: RelaySession | None = None
        while True:
            command, _, argument = (await read_line()).partition(" ")
            with trio.fail_after(STEP_TIMEOUT_S):
                if command == "accept":
                    session = await client.accept()
                    nursery.start_soon(print_received, session)
                    emit("session", peer=session.peer.text())
                elif command == "connect":
                    session = await client.request_relay(NodeId.from_text(argument))
                    nursery.start_soon(print_received, session)
                    emit("session", peer=session.peer.text())
                elif command == "send" and session is not None:
                    await session.send(argument.encode())
                elif command == "udp":
                    took = await _register_over_udp(relay, relay_id, int(argument))
                    emit("udp_failed" if took is None else "udp_registered", took=took)
                else:
                    emit("error", command=command)


async def _hold_tcp(relay: Address, *, task_status: trio.TaskStatus[Any]) -> None:
    async with open_tcp_relay_endpoint(relay, timeout=STEP_TIMEOUT_S) as endpoint:
        task_status.started(endpoint)
        await trio.sleep_forever()


async def _hold_client(client: RelayClient, *, task_status: trio.TaskStatus[None]) -> None:
    async with open_relay_client(client, timeout=STEP_TIMEOUT_S):
        task_status.started()
        await trio.sleep_forever()


async def _register_over_udp(relay: Address, relay_id: NodeId, attempts: int) -> float | None:
    """Seconds until a registration over UDP succeeds, in up to ``attempts`` of
    ``UDP_ATTEMPT_S`` each; None when none does."""
    started = time.monotonic()
    quick = ClientConfig(handshake_timeout=UDP_ATTEMPT_S / 2, handshake_attempts=2)
    for _ in range(min(attempts, UDP_ATTEMPTS)):
        async with await RealUdpStack().bind() as socket:
            client = RelayClient(socket, relay, NodeKey.generate(), relay_id, config=quick)
            try:
                async with open_relay_client(client, timeout=UDP_ATTEMPT_S):
                    return round(time.monotonic() - started, 3)
            except RegistrationFailed:
                continue
    return None


def main() -> None:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    relay = commands.add_parser("relay")
    relay.add_argument("listen", type=address_argument)
    node = commands.add_parser("node")
    node.add_argument("relay", type=address_argument)
    node.add_argument("relay_id", type=NodeId.from_text)
    node.add_argument("over", choices=["tcp", "udp"])
    args = parser.parse_args()
    if args.command == "relay":
        trio.run(run_relay, args.listen)
    else:
        trio.run(run_node, args.relay, args.relay_id, args.over)


if __name__ == "__main__":
    main()
