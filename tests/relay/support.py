"""A relay on the simulated internet and nodes behind any NAT preset, for the relay tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import trio

from macula_nat.identity import NodeKey
from macula_nat.net.address import Address
from macula_nat.net.sim import Internet, LinkProfile, Preset, Site, add_site, open_internet
from macula_nat.relay import (
    ClientConfig,
    RelayClient,
    RelayConfig,
    RelayNode,
    RelaySession,
    open_relay,
    open_relay_client,
)

RELAY_IP = "198.51.100.1"
RELAY_LISTEN: Address = (RELAY_IP, 7000)
PATIENCE = 30.0
"""Simulated seconds to wait for something that must happen (free under MockClock)."""


class Mesh:
    """One relay and the nodes registered with it, all torn down with the ``async with``."""

    def __init__(self, internet: Internet, relay: RelayNode, stack: AsyncExitStack) -> None:
        self.internet = internet
        self.relay = relay
        self._stack = stack
        self.sites: dict[RelayClient, Site] = {}

    async def node(
        self,
        preset: Preset = Preset.OPEN_INTERNET,
        *,
        config: ClientConfig | None = None,
        register: bool = True,
        receive: bool = True,
        link: LinkProfile | None = None,
    ) -> RelayClient:
        site = add_site(self.internet.public, preset, link=link)
        endpoint = await site.host.bind()
        client = RelayClient(
            endpoint,
            self.relay.address,
            NodeKey.generate(),
            self.relay.node_id,
            config=config,
            receive=receive,
        )
        self.sites[client] = site
        timeout = PATIENCE if register else None
        await self._stack.enter_async_context(open_relay_client(client, timeout=timeout))
        return client


@asynccontextmanager
async def open_mesh(
    config: RelayConfig | None = None, *, seed: int = 0, **settings: Any
) -> AsyncIterator[Mesh]:
    """A relay on the public internet, enabled with ``settings`` (see ``RelayNode.enable``)."""
    async with open_internet(seed=seed) as internet, AsyncExitStack() as stack:
        host = internet.add_host([RELAY_IP], name="relay")
        relay = RelayNode(host, RELAY_LISTEN, NodeKey.generate(), config)
        await stack.enter_async_context(open_relay(relay))
        await relay.enable(**settings)
        yield Mesh(internet, relay, stack)


async def connect(a: RelayClient, b: RelayClient) -> tuple[RelaySession, RelaySession]:
    """A session from ``a`` to ``b``: ``a``'s end and ``b``'s end."""
    with trio.fail_after(PATIENCE):
        mine = await a.request_relay(b.node_id)
        theirs = await b.accept()
    assert theirs.id == mine.id and theirs.peer == a.node_id and mine.peer == b.node_id
    return mine, theirs


async def exchange(sender: RelaySession, receiver: RelaySession, payload: bytes) -> bytes:
    """Send one datagram and return what arrives (failing rather than hanging)."""
    await sender.send(payload)
    with trio.fail_after(PATIENCE):
        return await receiver.receive()
