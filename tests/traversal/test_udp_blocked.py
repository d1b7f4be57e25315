"""Issue 13 on the simulated internet: a node behind a UDP-blocking firewall (``udp_blocked``:
every datagram dropped, TCP let through) reaches its relay over TCP/TLS and connects to a node
behind every other NAT type, both ways, relayed; once the firewall is lifted the pair goes
direct as the strategy table says for a port-restricted cone (what the preset is unblocked).
The blocked node's own directory fails while its UDP is blocked, as the Mainline DHT does
(:class:`UdpDirectory`), so it publishes and resolves through its relay's.
Times are simulated (the sim's TCP has no latency: see ``macula_nat.net.sim.streams``)."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
import trio
from trio.testing import MockClock

from macula_nat.connection.link import ConnectionMethod
from macula_nat.directory import Directory, DirectoryError, NodeRecord
from macula_nat.nat.profile import NatProfile
from macula_nat.net.address import Address
from macula_nat.net.sim import Preset, add_site
from macula_nat.net.sim.nat_box import NatBox
from macula_nat.relay import TcpFallback, TcpRelayEndpoint
from macula_nat.system import NatSystem
from macula_nat.traversal.strategy import Method, choose

from .test_matrix import NAT_TYPES
from .world import open_world

UPGRADE_BOUND = 5.0
"""Seconds from lifting the firewall to a direct path, at most (the issue's bound)."""


class UdpDirectory(Directory):
    """The world's directory as a DHT behind ``box`` would be: unreachable (DirectoryError)
    while the box drops UDP; ``refused`` counts the calls it failed."""

    def __init__(self, inner: Directory, box: NatBox) -> None:
        super().__init__()
        self.inner = inner
        self.box = box
        self.refused = 0

    def _check(self) -> None:
        if self.box.udp_blocked:
            self.refused += 1
            raise DirectoryError("the DHT is UDP, and UDP is blocked")

    async def publish_record(
        self,
        node_id: str,
        profile: NatProfile | None,
        ttl: float,
        *,
        home_relay: Address | None = None,
        candidates: Iterable[Address] = (),
        home_relay_alternate: Address | None = None,
        profile6: NatProfile | None = None,
    ) -> NodeRecord:
        self._check()
        return await self.inner.publish_record(
            node_id, profile, ttl, home_relay=home_relay, candidates=candidates,
            home_relay_alternate=home_relay_alternate,
            profile6=profile6,
        )  # fmt: skip

    async def resolve_record(self, node_id: str) -> NodeRecord | None:
        self._check()
        return await self.inner.resolve_record(node_id)

    async def announce_relay(self, endpoint: Address, ttl: float) -> None:
        self._check()
        await self.inner.announce_relay(endpoint, ttl)

    async def list_relays(self) -> list[Address]:
        self._check()
        return await self.inner.list_relays()


async def chat(a: NatSystem, b: NatSystem) -> tuple[object, object]:
    """``a`` connects to ``b``; a message each way; both ends' connections."""
    with trio.fail_after(60):
        connection = await a.connector.connect(b.node_id)
        accepted = await b.connector.accept()
        await connection.send_message(b"hello")
        assert await accepted.receive_message() == b"hello"
        await accepted.send_message(b"back")
        assert await connection.receive_message() == b"back"
    return connection, accepted


@pytest.mark.parametrize("blocked_dials", [True, False], ids=["it-dials", "it-is-dialled"])
@pytest.mark.parametrize("peer", NAT_TYPES)
async def test_a_node_behind_udp_blocked_connects_over_tcp_then_upgrades_once_lifted(
    peer: Preset, blocked_dials: bool, autojump_clock: MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    async with open_world(seed=NAT_TYPES.index(peer) + (50 if blocked_dials else 0)) as world:
        site = add_site(world.internet.public, Preset.UDP_BLOCKED, name="hotel",
                        link=world.site_link)  # fmt: skip
        dht = UdpDirectory(world.directory, site.nats[0])
        blocked = await world.node_at(site.host, tcp_fallback=True, directory=dht)
        other = await world.node(peer, "other")
        profile = blocked.detector.profile.value
        assert profile is not None and profile.udp_blocked and profile.nat_type == "UDP blocked"
        assert blocked.relays.client is not None
        assert isinstance(blocked.relays.client.endpoint, TcpRelayEndpoint)

        pair = (blocked, other) if blocked_dials else (other, blocked)
        connection, accepted = await chat(*pair)
        for end in (connection, accepted):
            assert end.info().connection_method is ConnectionMethod.RELAYED  # type: ignore[attr-defined]
        assert site.nats[0].blocked > 0  # its UDP was tried, and dropped
        assert dht.refused > 0  # its own directory failed: the relay's served it
        assert world.relay.statistics().directory_queries > 0

        site.nats[0].udp_blocked = False
        lifted = trio.current_time()
        with trio.fail_after(60):
            unblocked = await blocked.detector.profile.wait_value(
                lambda p: p is not None and not p.udp_blocked
            )
        assert unblocked is not None and unblocked.nat_type == "port-restricted cone"
        other_profile = other.detector.profile.value
        assert other_profile is not None
        plan = choose(*(unblocked, other_profile)[:: 1 if blocked_dials else -1])
        with trio.move_on_after(30):
            await connection.method.wait_value(lambda m: m is not ConnectionMethod.RELAYED)  # type: ignore[attr-defined]
            await accepted.method.wait_value(lambda m: m is not ConnectionMethod.RELAYED)  # type: ignore[attr-defined]
        took = trio.current_time() - lifted
        method = connection.info().connection_method  # type: ignore[attr-defined]
        await connection.send_message(b"after")  # type: ignore[attr-defined]
        with trio.fail_after(10):
            assert await accepted.receive_message() == b"after"  # type: ignore[attr-defined]

    if plan.method is Method.RELAY:
        assert method is ConnectionMethod.RELAYED, plan.reason
    else:
        assert method is not ConnectionMethod.RELAYED, plan.reason
        assert took <= UPGRADE_BOUND
    with capsys.disabled():
        print(f"\nudp_blocked {'->' if blocked_dials else '<-'} {peer}: relayed over TCP; "
              f"lifted -> {method} after {took:.2f} s")  # fmt: skip


@pytest.mark.parametrize("seed", range(1, 11))
async def test_a_lossy_path_is_no_reason_to_leave_udp(seed: int, autojump_clock: MockClock) -> None:
    """At 10% loss on the node's access link a fallback node is registered over UDP: the
    HELLOs sent during ``udp_bound`` get an answer even when a probe's handshake is lost, and
    a round answered without a completed probe is tried again at once; were every try of a
    start lost it would take TCP for a moment and be back on UDP at the next re-probe (at 20%
    loss, README: Networks that block UDP)."""
    async with open_world(seed=seed, loss=0.1) as world:
        site = add_site(world.internet.public, Preset.PORT_RESTRICTED_CONE, link=world.site_link)
        node = await world.node_at(site.host, tcp_fallback=True)
        with trio.fail_after(30):
            await node.relays.udp_blocked.wait_value(False)
            await node.relays.home.wait_value(lambda home: home is not None)
        assert node.relays.client is not None
        assert not isinstance(node.relays.client.endpoint, TcpRelayEndpoint)


@pytest.mark.parametrize("blocked_dials", [True, False], ids=["it-dials", "it-is-dialled"])
async def test_a_relay_only_connection_carries_on_across_the_return_of_udp(
    blocked_dials: bool, autojump_clock: MockClock
) -> None:
    """A pair that can never go direct (a random-port symmetric NAT each side, one of them
    behind a UDP-blocking firewall too) exchanges messages without a gap across the return of
    UDP: the home registration moves from TCP to UDP with the same relay, and the relayed
    session moves with it (the relay keys sessions by node id), so nothing is lost."""
    async with open_world(seed=7 + blocked_dials) as world:
        site = add_site(world.internet.public, Preset.SYMMETRIC_RANDOM, name="hotel",
                        link=world.site_link)  # fmt: skip
        site.nats[0].udp_blocked = True
        blocked = await world.node_at(site.host, tcp_fallback=True)
        other = await world.node(Preset.SYMMETRIC_RANDOM, "other")
        assert blocked.relays.client is not None
        assert isinstance(blocked.relays.client.endpoint, TcpRelayEndpoint)
        pair = (blocked, other) if blocked_dials else (other, blocked)
        connection, accepted = await chat(*pair)

        async def exchange(rounds: int) -> None:
            """``rounds`` messages each way, one every 0.5 s; each must arrive."""
            for index in range(rounds):
                message = b"%d" % index
                with trio.fail_after(10):
                    await connection.send_message(message)  # type: ignore[attr-defined]
                    assert await accepted.receive_message() == message  # type: ignore[attr-defined]
                    await accepted.send_message(message)  # type: ignore[attr-defined]
                    assert await connection.receive_message() == message  # type: ignore[attr-defined]
                await trio.sleep(0.5)

        await exchange(4)
        site.nats[0].udp_blocked = False
        handover = TcpFallback().handover
        await exchange(int(2 * (handover + TcpFallback().reprobe_interval)))  # well past it
        home = blocked.relays.client
        assert home is not None and not isinstance(home.endpoint, TcpRelayEndpoint)
        assert not blocked.relays.udp_blocked.value
        for end in (connection, accepted):
            assert end.info().connection_method is ConnectionMethod.RELAYED  # type: ignore[attr-defined]
            assert not end.closed  # type: ignore[attr-defined]
        assert home.statistics().sessions == 1  # the session moved to the UDP registration
