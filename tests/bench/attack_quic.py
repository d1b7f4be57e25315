"""QUIC connections under attack: receive memory against a flooding peer, handshake slots and
connect time under spoofed Initials (of a listener, and of a node whose coordinator reads QUIC
on its shared socket).

Each scenario runs on the simulated internet under a mock clock (in a worker thread with its
own ``trio.run``), so times are simulated seconds set by the link's latency and QUIC's timers,
not this machine's load; memory is what the receiving connection holds of the peer's data
(driver and aioquic, :meth:`Connection.statistics`), sampled every 50 ms while the attacker
keeps sending.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import trio
import trio.testing

from macula_nat.connection import (
    ConnectionFailed,
    connect,
    listen,
)
from macula_nat.demo.world import open_world
from macula_nat.net import Address, UdpEndpoint
from macula_nat.net.sim import LinkProfile, Preset, open_internet
from macula_nat.traversal import TraversalError
from tests.connection.test_attacks import (
    CLIENT,
    SERVER,
    incomplete_messages,
    out_of_order,
    pair,
    peak_held,
    spoofed_flood,
    unread_streams,
)

from .timing import Figure

MIB: Final = 1 << 20
BOUND: Final = 4 * MIB
FLOOD_RATE: Final = 16
"""Spoofed Initials a second."""
T = TypeVar("T")


async def _simulated(fn: Callable[[], Awaitable[T]]) -> T:
    """Run ``fn`` in its own Trio run under a mock clock, in a worker thread."""

    def run() -> T:
        return trio.run(fn, clock=trio.testing.MockClock(autojump_threshold=0))

    return await trio.to_thread.run_sync(run)


class _CountingEndpoint(UdpEndpoint):
    """The listener's endpoint, counting bytes in from and out to addresses other than
    ``legit``: what a spoofed flood costs and what it makes us send to its victims."""

    def __init__(self, inner: UdpEndpoint, legit: Callable[[Address], bool]) -> None:
        self.inner = inner
        self.legit = legit
        self.bytes_in = 0
        self.bytes_out = 0

    @property
    def local_address(self) -> Address:
        return self.inner.local_address

    async def send_to(self, data: bytes, address: Address) -> None:
        if not self.legit(address):
            self.bytes_out += len(data)
        await self.inner.send_to(data, address)

    async def receive_from(self) -> tuple[bytes, Address]:
        data, source = await self.inner.receive_from()
        if not self.legit(source):
            self.bytes_in += len(data)
        return data, source

    def close(self) -> None:
        self.inner.close()


async def _connect_time(*, flood: bool, retry_threshold: int = 4) -> tuple[float, int, float]:
    """Seconds a real peer's connect takes (5 s into a flood, if any; its handshake timeout
    if it fails), the handshake slots the flood held then, and bytes sent to spoofed sources
    per byte they sent. Each host's link adds 10 ms: a 40 ms round trip."""
    async with open_internet() as internet:
        client_ep, server_ep = await pair(internet, LinkProfile(latency=0.010))
        server = server_ep.local_address
        client = client_ep.local_address
        counting = _CountingEndpoint(server_ep, lambda address: address == client)
        async with (
            listen(counting, SERVER, [CLIENT.node_id], retry_threshold=retry_threshold) as listener,
            trio.open_nursery() as nursery,
        ):
            if flood:
                nursery.start_soon(
                    functools.partial(
                        spoofed_flood, internet, server, per_second=FLOOD_RATE, seconds=30
                    )
                )
                await trio.sleep(5)
            slots = listener.statistics().pending
            start = trio.current_time()
            try:
                async with connect(client_ep, server, CLIENT, SERVER.node_id):
                    await listener.accept()
            except ConnectionFailed:
                pass
            took = trio.current_time() - start
            nursery.cancel_scope.cancel()
        amplification = counting.bytes_out / counting.bytes_in if counting.bytes_in else 0.0
        return took, slots, amplification


async def _node_connect_time(*, flood: bool) -> tuple[float, int]:
    """Seconds a direct dial of a public node takes (5 s into a flood of its shared socket, if
    any; 3 s, the dial's bound, if it fails), and the node's inbound handshake slots the flood
    held then (its coordinator reads QUIC on that socket itself)."""
    async with open_world() as world:
        alice = await world.node(Preset.PORT_RESTRICTED_CONE, "alice")
        bob = await world.node(Preset.OPEN_INTERNET, "bob")
        record = await world.directory.resolve_record(bob.node_id.text())
        assert record is not None and record.candidates
        async with trio.open_nursery() as nursery:
            if flood:
                nursery.start_soon(
                    functools.partial(
                        spoofed_flood,
                        world.internet,
                        record.candidates[0],
                        per_second=FLOOD_RATE,
                        seconds=30,
                    )
                )
                await trio.sleep(5)
            slots = bob.coordinator.statistics().direct_handshakes.pending
            start = trio.current_time()
            try:
                await alice.coordinator.request_connection(
                    bob.node_id, timeout=3.0, allow_relay=False, punch=False
                )
                await bob.connector.accept()
            except (ConnectionFailed, TraversalError):
                pass
            took = trio.current_time() - start
            nursery.cancel_scope.cancel()
        return took, slots


async def _node_figures() -> list[Figure]:
    quiet, _ = await _simulated(functools.partial(_node_connect_time, flood=False))
    flooded, slots = await _simulated(functools.partial(_node_connect_time, flood=True))
    return [
        Figure(
            f"under attack: node's direct handshake slots held, {FLOOD_RATE} spoofed/s",
            slots,
            "slots",
            goal="<= 4 (retry_threshold) of 16",
        ),
        Figure(
            f"under attack: direct dial of a node under {FLOOD_RATE} spoofed Initials/s (sim)",
            flooded,
            "s",
            quiet,
            "<= 2 s",
        ),
    ]


async def run() -> list[Figure]:
    quiet, _, _ = await _simulated(functools.partial(_connect_time, flood=False))
    flooded, slots, amplification = await _simulated(functools.partial(_connect_time, flood=True))
    always, _, _ = await _simulated(
        functools.partial(_connect_time, flood=False, retry_threshold=0)
    )
    figures = [
        Figure(
            f"under attack: handshake slots held by {FLOOD_RATE} spoofed Initials/s",
            slots,
            "slots",
            goal="<= 4 (retry_threshold) of 16",
        ),
        Figure(
            f"under attack: connect under {FLOOD_RATE} spoofed Initials/s vs none (sim)",
            flooded,
            "s",
            quiet,
            "<= 2 s",
        ),
        Figure(
            "under attack: bytes sent to spoofed sources per byte from them",
            amplification,
            "x",
            goal="<= 1x (RFC 9000: 3x)",
        ),
        Figure(
            "under attack: connect when every Initial gets a Retry vs none (sim)",
            always,
            "s",
            quiet,
            "one RTT more (why Retry waits for a pile-up)",
        ),
    ]
    for attack in (incomplete_messages, unread_streams, out_of_order):
        peak, _ = await _simulated(functools.partial(peak_held, attack, BOUND))
        figures.append(
            Figure(
                f"under attack: receiver holds, {attack.__name__.replace('_', ' ')}",
                peak / MIB,
                "MiB",
                BOUND / MIB,
                "<= bound + 1 MiB",
            )
        )
    figures += await _node_figures()
    return figures
