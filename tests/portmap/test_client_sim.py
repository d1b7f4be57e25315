"""The PortMapper against the simulated NAT's NAT-PMP and PCP service (MockClock): mapping,
renewal, a router that forgets, deletion at shutdown, malformed answers, a gateway that lies."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from trio.testing import MockClock

from macula_nat.actors import ActorExited, Supervisor, open_actor
from macula_nat.nat.detector import NatDetector
from macula_nat.nat.profile import NatProfile
from macula_nat.net import UdpEndpoint
from macula_nat.net.sim import Internet, Preset, add_site, open_internet
from macula_nat.net.sim.nat_box import NatBox
from macula_nat.portmap import natpmp, pcp
from macula_nat.portmap.client import (
    PortMapConfig,
    PortMapper,
    PortMapperServer,
    PortMapping,
    Protocol,
)

STRANGER = "198.51.100.77"


@asynccontextmanager
async def running(mapper: PortMapper) -> AsyncIterator[PortMapper]:
    async with open_actor(PortMapperServer(mapper)):
        yield mapper


async def mapped(mapper: PortMapper) -> PortMapping:
    with trio.fail_after(30):
        mapping = await mapper.mapping.wait_value(lambda m: m is not None)
    assert mapping is not None
    return mapping


async def site(internet: Internet, **service: bool) -> tuple[NatBox, PortMapper, UdpEndpoint]:
    where = add_site(internet.public, Preset.SYMMETRIC_RANDOM, name="home")
    nat = where.nats[0]
    if service:
        nat.enable_port_mapping(**service, max_lifetime=600)
    node = await where.host.bind((where.host.addresses[0], 40000))
    config = PortMapConfig(gateway=nat.lan_address, check_interval=30, retry_interval=20)
    return nat, PortMapper(where.host, node.local_address[1], config), node


@pytest.mark.parametrize(
    ("service", "protocol"),
    [
        ({"natpmp": True, "pcp": True}, None),
        ({"natpmp": True, "pcp": False}, Protocol.NATPMP),
        ({"natpmp": False, "pcp": True}, Protocol.PCP),
    ],
)
async def test_maps_renews_and_deletes(
    autojump_clock: MockClock, service: dict[str, bool], protocol: Protocol | None
) -> None:
    async with open_internet(seed=3) as internet:
        nat, mapper, node = await site(internet, **service)
        stranger = await internet.add_host([STRANGER]).bind((STRANGER, 5000))
        async with running(mapper):
            mapping = await mapped(mapper)
            assert protocol is None or mapping.protocol is protocol
            assert (
                mapping.internal == node.local_address
                and mapping.external[0] == nat.public_addresses[0]
            )
            assert mapping.lifetime == 600 and mapping.trusted is None  # no detector to compare
            requested = [m for m in nat.mappings() if m.requested]
            assert [(m.internal, m.external) for m in requested] == [
                (mapping.internal, mapping.external)
            ]
            # a stranger reaches the node at the mapped port: a symmetric NAT, port-forwarded
            await stranger.send_to(b"knock", mapping.external)
            with trio.fail_after(5):
                assert await node.receive_from() == (b"knock", (STRANGER, 5000))
            await node.send_to(b"who's there", (STRANGER, 5000))  # the answer leaves mapped
            with trio.fail_after(5):
                assert await stranger.receive_from() == (b"who's there", mapping.external)
            await trio.sleep(mapping.lifetime * 0.75)  # renewed at half the lifetime
            renewed = mapper.mapping.value
            assert renewed is not None and renewed.external == mapping.external
            assert renewed.expires_at > mapping.expires_at
            assert mapper.statistics().renewals >= 1
        # stopped: the mapping was deleted on the router
        assert not [m for m in nat.mappings() if m.requested]
        assert mapper.statistics().deleted == 1 and mapper.mapping.value is None


async def test_no_service_no_mapping_no_crash(autojump_clock: MockClock) -> None:
    async with open_internet(seed=3) as internet:
        _, mapper, _ = await site(internet)
        async with running(mapper):
            await trio.sleep(100)
            assert mapper.mapping.value is None
            stats = mapper.statistics()
            assert stats.probes >= 5 and stats.granted == 0  # probes again every 20 s


async def test_router_that_forgets_is_mapped_again(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_internet(seed=3) as internet:
        nat, mapper, _ = await site(internet, natpmp=True, pcp=True)
        async with running(mapper):
            first = await mapped(mapper)
            await trio.sleep(100)
            with caplog.at_level(logging.WARNING, "macula_nat.portmap.client"):
                nat.rebind()  # the router reboots: mappings gone, epoch from zero
                assert not [m for m in nat.mappings() if m.requested]
                await trio.sleep(40)  # the next check (every 30 s) sees the epoch reset
            assert "lost its" in caplog.text
            assert mapper.statistics().forgotten == 1
            again = [m for m in nat.mappings() if m.requested]
            assert len(again) == 1 and mapper.mapping.value is not None
            assert mapper.mapping.value.external == again[0].external
            assert first.internal == again[0].internal


async def test_malformed_answers_are_logged_and_ignored(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A 'gateway' that answers garbage to everything: warnings, no mapping, no crash."""
    async with open_internet(seed=3) as internet:
        where = add_site(internet.public, Preset.SYMMETRIC_RANDOM, name="home")
        liar = where.nats[0].network.add_host(name="liar")
        server = await liar.bind((liar.addresses[0], natpmp.PORT))
        config = PortMapConfig(
            gateway=liar.addresses[0], protocols=(Protocol.PCP, Protocol.NATPMP),
            retry_interval=20,
        )  # fmt: skip
        mapper = PortMapper(where.host, 40000, config)

        async def answer_garbage() -> None:
            garbage = {
                2: [b"\x02\x81", b"\x02" + bytes(24), b"\x02\x80" + bytes(21)],
                0: [b"\x00\x80\x00", b"\x00\x01" + bytes(10), b"\x00\x81" + bytes(6)],
            }
            for index in range(1000):
                data, source = await server.receive_from()
                replies = garbage[data[0]]
                await server.send_to(replies[index % len(replies)], source)

        with caplog.at_level(logging.WARNING, "macula_nat.portmap.client"):
            async with trio.open_nursery() as nursery, running(mapper):
                nursery.start_soon(answer_garbage)
                await trio.sleep(60)
                nursery.cancel_scope.cancel()
        assert mapper.mapping.value is None
        assert mapper.statistics().malformed >= 3
        assert "malformed PCP ANNOUNCE answer" in caplog.text
        assert "malformed NAT-PMP external address answer" in caplog.text


async def test_a_gateway_whose_external_address_stun_contradicts_is_not_published(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_internet(seed=3) as internet:
        nat, mapper, _ = await site(internet, natpmp=True, pcp=False)
        detector = NatDetector(internet.public.add_host())
        detector.profile.value = _profile("203.0.113.99")  # STUN saw another public IP
        mapper.detector = detector
        with caplog.at_level(logging.WARNING, "macula_nat.portmap.client"):
            async with running(mapper):
                mapping = await mapped(mapper)
                await trio.sleep(1)
                assert mapper.mapping.value is not None
                assert mapper.mapping.value.trusted is False
                assert detector.mapped is None and detector.profile.value.mapped is None
                assert "STUN sees 203.0.113.99" in caplog.text
                assert mapper.statistics().distrusted == 1
                # STUN now agrees (the profile moved): the mapping is trusted and published
                detector._apply(_profile(nat.public_addresses[0]), None)
                await trio.sleep(1)
                assert detector.mapped == mapping.external
                profile = detector.profile.value
                assert profile is not None and profile.mapped == mapping.external
        assert detector.mapped is None  # deleted on shutdown, unpublished


def _profile(public_ip: str) -> NatProfile:
    return NatProfile("pd", "pd", "rd", public_ip, 1234, 0.0, "medium")


def test_pcp_codec_constants_agree_with_the_sim() -> None:
    assert pcp.VERSION == 2 and natpmp.PORT == 5351


async def test_a_restarted_server_renews_the_same_mapping(autojump_clock: MockClock) -> None:
    """The mapping, nonce and epochs live in the handle: a crash keeps the mapping on the
    router (no delete), and the new incarnation renews it (PCP: the same nonce)."""
    async with open_internet(seed=3) as internet:
        nat, mapper, _ = await site(internet, natpmp=False, pcp=True)
        tree = Supervisor([mapper.child_spec(name="nat_port_mapper")], intensity=3)
        async with open_actor(tree) as sup:
            first = await mapped(mapper)
            server = mapper.server
            assert server is not None
            with pytest.raises(ActorExited):
                await server.call("no such request")  # crashes it
            await trio.testing.wait_all_tasks_blocked()
            assert mapper.server is not server and mapper.server is not None
            assert mapper.mapping.value == first  # still held
            assert len([m for m in nat.mappings() if m.requested]) == 1
            await trio.sleep(first.lifetime)  # renewed by the new incarnation, same address
            renewed = mapper.mapping.value
            assert renewed is not None and renewed.external == first.external
            assert len([m for m in nat.mappings() if m.requested]) == 1
            assert mapper.statistics().deleted == 0
            assert (await sup.supervisor_statistics()).restarts == 1
