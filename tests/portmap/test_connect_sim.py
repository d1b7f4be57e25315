"""Port mapping end to end on the simulated internet (MockClock): a symmetric NAT whose router
maps the node's port on request makes a symmetric <-> symmetric pair connect directly."""

from __future__ import annotations

import pytest
import trio
from trio.testing import MockClock

from macula_nat.connection.link import ConnectionMethod
from macula_nat.net.sim import Preset, add_site
from macula_nat.portmap.client import PortMapConfig, Protocol
from macula_nat.system import NatConfig, open_nat_system
from macula_nat.traversal.strategy import Method, choose
from macula_nat.web.snapshot import profile_view
from tests.portmap.world import mapped_node
from tests.traversal.world import PRIMARY, open_world


async def test_symmetric_pair_connects_direct_to_the_mapped_side(
    autojump_clock: MockClock,
) -> None:
    async with open_world() as world:
        bob, _ = await mapped_node(world, Preset.SYMMETRIC_RANDOM, "bob", pcp=False)
        alice = await world.node(Preset.SYMMETRIC_RANDOM, "alice")
        assert bob.port_mapper is not None
        mapping = bob.port_mapper.mapping.value
        assert mapping is not None and mapping.protocol is Protocol.NATPMP and mapping.trusted
        profile = bob.detector.profile.value
        assert profile is not None and profile.nat_type == "symmetric"
        assert profile.mapped == mapping.external
        shown = profile_view(profile, 0.0)  # the status page's profile
        assert isinstance(shown, dict) and shown["mapped"] == "{}:{}".format(*mapping.external)
        record = await world.directory.resolve_record(bob.node_id.text())
        assert record is not None and mapping.external in record.candidates
        alice_profile = alice.detector.profile.value
        assert alice_profile is not None and alice_profile.mapped is None
        assert choose(alice_profile, profile).method is Method.DIRECT
        with trio.fail_after(30):
            connection = await alice.connector.connect(bob.node_id)
            accepted = await bob.connector.accept()
        assert connection.info().connection_method == ConnectionMethod.DIRECT
        await connection.send_message(b"through the mapped port")
        assert await accepted.receive_message() == b"through the mapped port"
        await accepted.send_message(b"and back")
        assert await connection.receive_message() == b"and back"
        assert alice.coordinator.statistics().direct == 1
        assert alice.relays is not None  # nothing went through the relay for this connection
        assert connection.link is not None and connection.link.statistics().sent_direct > 0


async def test_the_mapped_side_dialling_ends_direct(autojump_clock: MockClock) -> None:
    """The mapped side initiates: the plan says the other side dials, so the connection starts
    relayed and the punch reaches the mapped port: it upgrades to direct."""
    async with open_world() as world:
        bob, _ = await mapped_node(world, Preset.SYMMETRIC_RANDOM, "bob", natpmp=False)
        alice = await world.node(Preset.SYMMETRIC_RANDOM, "alice")
        with trio.fail_after(60):
            connection = await bob.connector.connect(alice.node_id)
            accepted = await alice.connector.accept()
            await connection.method.wait_value(lambda m: m != ConnectionMethod.RELAYED)
        assert connection.info().connection_method in (
            ConnectionMethod.DIRECT, ConnectionMethod.PUNCHED,
        )  # fmt: skip
        await connection.send_message(b"hello")
        assert await accepted.receive_message() == b"hello"


async def test_the_mapping_is_gone_after_the_node_stops(autojump_clock: MockClock) -> None:
    async with open_world() as world:
        site = add_site(world.internet.public, Preset.SYMMETRIC_RANDOM, name="carol")
        nat = site.nats[0]
        nat.enable_port_mapping()
        config = NatConfig(
            stack=site.host, observers=(PRIMARY,), detect_timeout=1.0,
            directory=world.directory, port_mapping=PortMapConfig(gateway=nat.lan_address),
        )  # fmt: skip
        async with open_nat_system(config) as carol:
            assert carol.port_mapper is not None
            with trio.fail_after(30):
                await carol.port_mapper.mapping.wait_value(lambda m: m is not None)
            assert [m for m in nat.mappings() if m.requested]
            assert carol.registry.whereis("nat_port_mapper") is not None
        assert not [m for m in nat.mappings() if m.requested]
        assert carol.port_mapper.statistics().deleted == 1


async def test_port_mapping_is_off_by_default(autojump_clock: MockClock) -> None:
    async with open_world() as world:
        node = await world.node(Preset.SYMMETRIC_RANDOM, "dave")
        assert node.port_mapper is None and node.registry.whereis("nat_port_mapper") is None
        assert NatConfig(port_mapping=True).port_mapping == PortMapConfig()


PROTOCOLS = [{"natpmp": True, "pcp": False}, {"natpmp": False, "pcp": True}]
OTHERS = [
    Preset.PORT_RESTRICTED_CONE,
    Preset.SYMMETRIC_RANDOM,
    Preset.SYMMETRIC_SEQUENTIAL,
    Preset.CGNAT_FULL_CONE,
]


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=["natpmp", "pcp"])
@pytest.mark.parametrize("other", OTHERS)
async def test_nat_matrix_rows_symmetric_with_mapping(
    autojump_clock: MockClock, protocol: dict[str, bool], other: Preset
) -> None:
    """The matrix rows "symmetric with NAT-PMP / PCP": both ways, every pair ends direct
    (dialled at the mapped port, or punched to it)."""
    async with open_world() as world:
        mapped, _ = await mapped_node(world, Preset.SYMMETRIC_RANDOM, "mapped", **protocol)
        peer = await world.node(other, "peer")
        for dialler, dialled in ((peer, mapped), (mapped, peer)):
            with trio.fail_after(30):
                connection = await dialler.connector.connect(dialled.node_id)
                accepted = await dialled.connector.accept()
                await connection.method.wait_value(lambda m: m != ConnectionMethod.RELAYED)
                await connection.send_message(b"ping")
                assert await accepted.receive_message() == b"ping"
            if dialler is peer:
                assert connection.info().connection_method == ConnectionMethod.DIRECT
            await connection.aclose()
            await accepted.aclose()
