"""A node whose UDP is blocked falls back to its relay over TCP/TLS, connects relayed both
ways, and goes back to UDP when UDP works again; on loopback, with the node's UDP behind an
in-process firewall (a stack whose endpoints drop every datagram while ``blocked``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import attrs
import pytest
import trio

from macula_nat.directory import EmbeddedDirectory
from macula_nat.identity import NodeKey
from macula_nat.net import RealUdpStack
from macula_nat.net.address import Address
from macula_nat.net.endpoint import UdpEndpoint, UdpStack
from macula_nat.relay import RelayNode, TcpRelayConfig, TcpRelayEndpoint, open_relay
from macula_nat.relay.registry import (
    RegistryConfig,
    RelayRegistry,
    TcpFallback,
    open_relay_registry,
)

from .support import exchange

LOOPBACK = "127.0.0.1"
BOUND = 15.0


class Firewall(UdpStack):
    """The host's loopback UDP, dropping every datagram both ways while ``blocked``."""

    def __init__(self) -> None:
        self.blocked = True
        self._stack = RealUdpStack([LOOPBACK])

    @property
    def addresses(self) -> tuple[str, ...]:
        return self._stack.addresses

    async def bind(self, address: Address = (LOOPBACK, 0)) -> UdpEndpoint:
        return _Filtered(self, await self._stack.bind((LOOPBACK, address[1])))

    async def connect_stream(self, address: Address) -> tuple[trio.abc.Stream, Address]:
        return await self._stack.connect_stream(address)  # TCP passes


class _Filtered(UdpEndpoint):
    def __init__(self, firewall: Firewall, inner: UdpEndpoint) -> None:
        self._firewall = firewall
        self._inner = inner

    @property
    def local_address(self) -> Address:
        return self._inner.local_address

    async def send_to(self, data: bytes, address: Address) -> None:
        if self._firewall.blocked:
            await trio.lowlevel.checkpoint()
            return
        await self._inner.send_to(data, address)

    async def receive_from(self) -> tuple[bytes, Address]:
        while True:  # bounded by the tests' deadlines
            received = await self._inner.receive_from()
            if not self._firewall.blocked:
                return received

    def close(self) -> None:
        self._inner.close()


FALLBACK = TcpFallback(udp_bound=0.5, reprobe_interval=0.5, handover=0.5, connect_timeout=5.0)
FAST = RegistryConfig(probe_timeout=2.0, probe_window=0.1, tcp_fallback=FALLBACK)


@asynccontextmanager
async def world() -> AsyncIterator[tuple[RelayNode, EmbeddedDirectory]]:
    relay = RelayNode(
        RealUdpStack([LOOPBACK]), (LOOPBACK, 0), NodeKey.generate(), tcp=TcpRelayConfig()
    )
    directory = EmbeddedDirectory()
    async with open_relay(relay):
        await relay.enable()
        await directory.announce_relay(relay.address, 300.0)
        yield relay, directory


async def node(
    stack: AsyncExitStack,
    directory: EmbeddedDirectory,
    udp: UdpStack,
    heard: list[bool] | None = None,
) -> RelayRegistry:
    registry = RelayRegistry(
        directory,
        udp,
        NodeKey.generate(),
        config=FAST,
        on_udp_blocked=None if heard is None else heard.append,
    )
    await stack.enter_async_context(open_relay_registry(registry))
    with trio.fail_after(BOUND):
        await registry.home.wait_value(lambda home: home is not None)
    return registry


async def test_a_node_without_udp_registers_over_tcp_connects_both_ways_and_returns_to_udp(
    capsys: pytest.CaptureFixture[str],
) -> None:
    firewall = Firewall()
    async with world() as (relay, directory), AsyncExitStack() as stack:
        started = trio.current_time()
        heard: list[bool] = []  # what the node's detector hears (the NAT system wires it so)
        blocked = await node(stack, directory, firewall, heard)
        fell_back = trio.current_time() - started
        open_ = await node(stack, directory, RealUdpStack([LOOPBACK]))
        assert blocked.udp_blocked.value and not open_.udp_blocked.value
        assert blocked.statistics().udp_blocked  # the status page's registry figures
        assert blocked.client is not None and open_.client is not None
        assert isinstance(blocked.client.endpoint, TcpRelayEndpoint)
        for a, b in [(blocked, open_), (open_, blocked)]:
            assert a.client is not None and b.client is not None
            with trio.fail_after(BOUND):
                mine = await a.request_relay(b.client.node_id)
                theirs = await b.client.accept()
            assert await exchange(mine, theirs, b"over tcp and udp") == b"over tcp and udp"
            assert await exchange(theirs, mine, b"and back") == b"and back"

        first = blocked.client.endpoint if blocked.client is not None else None
        assert isinstance(first, TcpRelayEndpoint)
        first.close()  # the TCP link breaks: the node registers over a new one
        with trio.fail_after(BOUND):
            await blocked.home.wait_value(
                lambda home: (
                    home is not None
                    and blocked.client is not None
                    and blocked.client.endpoint is not first
                )
            )
        assert blocked.udp_blocked.value

        firewall.blocked = False
        lifted = trio.current_time()
        with trio.fail_after(BOUND):
            await blocked.udp_blocked.wait_value(False)
            await blocked.home.wait_value(  # over UDP, after the handover
                lambda home: (
                    home is not None
                    and blocked.client is not None
                    and not isinstance(blocked.client.endpoint, TcpRelayEndpoint)
                )
            )
        back_on_udp = trio.current_time() - lifted
        assert blocked.client is not None
        assert not isinstance(blocked.client.endpoint, TcpRelayEndpoint)
        assert not blocked.statistics().udp_blocked
        statistics = relay.tcp_statistics()
    assert statistics is not None and statistics.accepted >= 1
    assert heard == [True, False]  # a broken TCP link is no news about UDP
    with capsys.disabled():
        print(f"\nUDP blocked: relayed over TCP after {fell_back:.2f} s; "
              f"back on UDP {back_on_udp:.2f} s after the block lifted")  # fmt: skip


async def test_a_pinned_home_relay_is_reached_over_tcp_without_the_directory() -> None:
    """A directory that lists no relay (the DHT is UDP too) does not stop a node whose home
    relay is pinned from falling back to it."""
    async with world() as (relay, _), AsyncExitStack() as stack:
        config = attrs.evolve(FAST, home_relay=relay.address)
        registry = RelayRegistry(EmbeddedDirectory(), Firewall(), NodeKey.generate(), config=config)
        await stack.enter_async_context(open_relay_registry(registry))
        with trio.fail_after(BOUND):
            await registry.home.wait_value(lambda home: home is not None)
        assert registry.udp_blocked.value
        assert registry.client is not None
        assert isinstance(registry.client.endpoint, TcpRelayEndpoint)
