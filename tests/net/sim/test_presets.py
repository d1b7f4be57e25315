"""Hosts behind each preset, seen from public servers with two IPs and two ports each."""

from __future__ import annotations

import itertools

import pytest
import trio
import trio.testing

from macula_nat.net.sim import UDP_PRESETS, Preset, add_site, open_internet
from tests.nat_lab.presets import UDP_PRESETS as LAB_UDP_PRESETS
from tests.nat_lab.presets import NatPreset
from tests.net.sim.support import SERVER_PORTS, bind_servers, observe, receive_all

# (mapping, filtering, allocation) an outside observer must measure; None: no NAT at all.
EXPECTED: dict[Preset, tuple[str, str, str] | None] = {
    Preset.OPEN_INTERNET: None,
    Preset.FULL_CONE: ("ei", "ei", "pp"),
    Preset.RESTRICTED_CONE: ("ei", "hd", "pp"),
    Preset.PORT_RESTRICTED_CONE: ("ei", "pd", "pp"),
    Preset.SYMMETRIC_RANDOM: ("pd", "pd", "rd"),
    Preset.SYMMETRIC_SEQUENTIAL: ("pd", "pd", "pc"),
    Preset.EIM_RANDOM_PORT: ("ei", "pd", "rd"),
    Preset.ADDRESS_DEPENDENT: ("hd", "pd", "rd"),
    Preset.CGNAT: ("ei", "hd", "rd"),
    Preset.CGNAT_FULL_CONE: ("ei", "hd", "rd"),
}


def test_every_preset_has_an_expectation() -> None:
    assert set(EXPECTED) == set(UDP_PRESETS)


@pytest.mark.parametrize("preset", UDP_PRESETS)
async def test_observed_mappings_match_the_preset(
    preset: Preset, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_internet(seed=11) as internet:
        servers = await bind_servers(internet)
        site = add_site(internet.public, preset, name="client")
        client = await site.host.bind()
        local_port = client.local_address[1]

        observed = [await observe(client, server) for server in servers]

    expected = EXPECTED[preset]
    if expected is None:
        assert observed == [(site.host.addresses[0], local_port)] * len(servers)
        return
    mapping, _, allocation = expected
    assert {ip for ip, _ in observed} == {site.nats[0].public_addresses[0]}
    by_ip = [observed[i : i + len(SERVER_PORTS)] for i in range(0, 8, len(SERVER_PORTS))]
    if mapping == "ei":
        assert len(set(observed)) == 1
    elif mapping == "hd":
        assert all(len(set(group)) == 1 for group in by_ip)
        assert len(set(observed)) == 4
    else:
        assert len(set(observed)) == 8
    ports = list(dict.fromkeys(port for _, port in observed))
    if allocation == "pp":
        assert ports == [local_port]
    elif allocation == "pc":
        assert [b - a for a, b in itertools.pairwise(ports)] == [1] * 7
    else:
        assert local_port not in ports
        assert len({b - a for a, b in itertools.pairwise(ports)}) == len(ports) - 1


@pytest.mark.parametrize("preset", UDP_PRESETS)
async def test_unsolicited_inbound_is_filtered_per_preset(
    preset: Preset, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_internet(seed=12) as internet:
        servers = await bind_servers(internet)
        site = add_site(internet.public, preset)
        client = await site.host.bind()
        contacted, same_ip_other_port, other_ip, other_server = (
            servers[0],
            servers[1],
            servers[2],
            servers[4],
        )
        mapped = await observe(client, contacted)

        probes = {
            b"contacted": contacted,
            b"same-ip-other-port": same_ip_other_port,
            b"other-ip": other_ip,
            b"other-server": other_server,
        }
        for payload, server in probes.items():
            await server.send_to(payload, mapped)
        received = await receive_all(client, limit=len(probes))
        filtered = sum(nat.statistics().filtered for nat in site.nats)

    expected = EXPECTED[preset]
    filtering = "open" if expected is None else expected[1]
    admitted = {
        "open": set(probes),
        "ei": set(probes),
        "hd": {b"contacted", b"same-ip-other-port"},
        "pd": {b"contacted"},
    }[filtering]
    assert {payload for payload, _ in received} == admitted
    assert all(source == probes[payload].local_address for payload, source in received)
    assert filtered == len(probes) - len(admitted)


@pytest.mark.parametrize(
    "preset", [Preset.FULL_CONE, Preset.RESTRICTED_CONE, Preset.PORT_RESTRICTED_CONE]
)
async def test_port_preservation_falls_back_for_a_second_host_on_the_same_port(
    preset: Preset, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_internet(seed=13) as internet:
        servers = await bind_servers(internet)
        site = add_site(internet.public, preset)
        neighbour = site.nats[-1].add_host()
        first = await site.host.bind(("0.0.0.0", 40000))
        second = await neighbour.bind(("0.0.0.0", 40000))

        assert await observe(first, servers[0]) == (site.nats[0].public_addresses[0], 40000)
        fallback = await observe(second, servers[0])
        assert fallback[0] == site.nats[0].public_addresses[0]
        assert fallback[1] != 40000


def test_presets_agree_with_the_namespace_lab() -> None:
    """Every lab preset has a simulated twin that an observer classifies the same way."""
    assert Preset(NatPreset.UDP_BLOCKED.value) is Preset.UDP_BLOCKED
    for lab_preset in LAB_UDP_PRESETS:
        twin = EXPECTED[Preset(lab_preset.value)]
        lab = lab_preset.expected
        assert twin == ((lab.mapping, lab.filtering, lab.allocation) if lab.nat else None)


async def test_udp_blocked_drops_every_datagram_until_lifted_then_is_a_port_restricted_cone(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Issue 13: the preset's firewall drops UDP both ways (counted); TCP streams pass."""
    async with open_internet(seed=13) as internet:
        servers = await bind_servers(internet)
        site = add_site(internet.public, Preset.UDP_BLOCKED)
        client = await site.host.bind()
        await client.send_to(b"out", servers[0].local_address)
        await trio.sleep(1.0)
        assert site.nats[0].blocked == 1
        listener = await internet.add_host(["198.51.100.50"]).listen_stream(("198.51.100.50", 0))
        stream, _ = await site.host.connect_stream(listener.local_address)
        accepted, seen_as = await listener.accept()
        assert seen_as[0] == site.nats[0].public_addresses[0]  # through the NAT
        await stream.send_all(b"over tcp")
        assert await accepted.receive_some(100) == b"over tcp"
        site.nats[0].udp_blocked = False
        mapped = await observe(client, servers[0])
        assert mapped == (site.nats[0].public_addresses[0], client.local_address[1])
