"""Relay over TCP/TLS beside relay over UDP: payload throughput of one relayed session.

One relay on 127.0.0.1 serves both; per round, two nodes registered over UDP, then two over
TCP/TLS (the framed form), carry one session each way of the same shape: the sender keeps
``WINDOW`` datagrams of ``PAYLOAD`` bytes in flight (what the receiver has not yet counted),
starting the window over when nothing arrives for ``STALL`` seconds (a drop), for ``ROUND``
seconds. Everything runs in this one process, both transports alike, so the ratio is the cost
of TLS, the stream framing and the link's queues against plain datagrams. Rounds alternate;
medians are printed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from statistics import median
from typing import Final

import trio

from macula_nat.identity import NodeKey
from macula_nat.net import RealUdpStack
from macula_nat.relay import (
    RelayClient,
    RelayConfig,
    RelayNode,
    RelaySession,
    TcpRelayConfig,
    open_relay,
    open_relay_client,
    open_tcp_relay_endpoint,
)

from .timing import Figure, now

LOOPBACK: Final = "127.0.0.1"
PAYLOAD: Final = 1200
WINDOW: Final = 64
ROUND: Final = 0.6
ROUNDS: Final = 5
STALL: Final = 0.05
UNLIMITED: Final = 1e12
CONFIG: Final = RelayConfig(control_rate=UNLIMITED, control_burst=UNLIMITED)


async def _node(stack: AsyncExitStack, relay: RelayNode, tcp: bool) -> RelayClient:
    if tcp:
        endpoint = await stack.enter_async_context(open_tcp_relay_endpoint(relay.address))
    else:
        endpoint = await stack.enter_async_context(
            await RealUdpStack([LOOPBACK]).bind((LOOPBACK, 0))
        )
    client = RelayClient(endpoint, relay.address, NodeKey.generate(), relay.node_id)
    return await stack.enter_async_context(open_relay_client(client))


async def _pump(sender: RelaySession, receiver: RelaySession) -> float:
    """Payload bytes a second carried from ``sender`` to ``receiver`` in one round."""
    received = 0
    arrived = trio.Event()

    async def count() -> None:
        nonlocal received, arrived
        async for _ in receiver:
            received += 1
            arrived.set()
            arrived = trio.Event()

    payload = bytes(PAYLOAD)
    sent = 0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(count)
        started = now()
        deadline = started + ROUND
        while now() < deadline:
            while sent - received < WINDOW and now() < deadline:
                await sender.send(payload)
                sent += 1
            with trio.move_on_after(STALL) as stall:
                await arrived.wait()
            if stall.cancelled_caught:
                sent = received  # lost in flight: start the window over
        elapsed = now() - started
        nursery.cancel_scope.cancel()
    return received * PAYLOAD / elapsed


@asynccontextmanager
async def _session(relay: RelayNode, tcp: bool) -> AsyncIterator[tuple[RelaySession, RelaySession]]:
    async with AsyncExitStack() as stack:
        a, b = await _node(stack, relay, tcp), await _node(stack, relay, tcp)
        mine = await a.request_relay(b.node_id)
        theirs = await b.accept()
        yield mine, theirs


async def run() -> list[Figure]:
    relay = RelayNode(
        RealUdpStack([LOOPBACK]), (LOOPBACK, 0), NodeKey.generate(), CONFIG, tcp=TcpRelayConfig()
    )
    udp: list[float] = []
    tcp: list[float] = []
    async with open_relay(relay):
        await relay.enable(bandwidth_limit=UNLIMITED)
        for _ in range(ROUNDS):
            for over_tcp, rates in ((False, udp), (True, tcp)):
                async with _session(relay, over_tcp) as (mine, theirs):
                    rates.append(await _pump(mine, theirs))
    ratios = [t / u for t, u in zip(tcp, udp, strict=True)]
    print(
        f"relay over TCP/TLS: {PAYLOAD} B, {ROUNDS} alternating rounds, medians below; "
        f"rep-by-rep ratio {min(ratios):.2f}-{max(ratios):.2f}x",
        flush=True,
    )
    return [
        Figure(
            f"relay over TCP/TLS: MB/s of payload ({PAYLOAD} B), vs over UDP",
            median(tcp) / 1e6,
            "MB/s",
            median(udp) / 1e6,
        ),
    ]


if __name__ == "__main__":

    async def _main() -> None:
        for figure in await run():
            print(figure.render(), flush=True)

    trio.run(_main)
