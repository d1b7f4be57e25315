"""The gateway: its configuration, its command line, and two gateways on the simulated internet."""

from __future__ import annotations

import argparse

import pytest
import trio
import trio.testing

from macula_nat.cli.detect import detect_once
from macula_nat.cli.gateway import config_from_args, gateway_main, run_gateway
from macula_nat.cli.parsers import add_gateway_parser
from macula_nat.connection.link import ConnectionMethod
from macula_nat.dht.config import DhtConfig
from macula_nat.dht.node import open_dht_node
from macula_nat.directory.mainline import MainlineDirectory
from macula_nat.gateway import Gateway, GatewayConfig
from macula_nat.identity import NodeKey
from macula_nat.net.address import ANY_IPV4, ANY_IPV6, Address, ip_version
from macula_nat.net.sim import Internet, LinkProfile, Preset, SimHost, add_site, open_internet
from macula_nat.relay import TcpRelayConfig
from macula_nat.relay.registry import RegistryConfig, RelayRegistry, open_relay_registry
from macula_nat.system import NatConfig, open_nat_system

EPOCH = 1_700_000_000.0
A_PRIMARY: Address = ("198.51.100.10", 3478)
A_ALTERNATE: Address = ("198.51.100.11", 3490)
B_PRIMARY: Address = ("203.0.113.20", 3478)
PATIENCE = 120.0
SITE_LINK = LinkProfile(latency=0.005)


def clock() -> float:
    return EPOCH + trio.current_time()


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_gateway_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["gateway", *argv])


def test_the_relay_and_dht_ports_follow_the_listen_port_unless_given() -> None:
    default = config_from_args(parse("--listen", "203.0.113.1:4000"))
    given = config_from_args(
        parse(
            "--listen", "203.0.113.1:4000", "--alt", "203.0.113.2:4001",
            "--relay-port", "5000", "--dht-port", "6881",
            "--bootstrap", "192.0.2.1:6881", "[2001:db8::1]:6881",
            "--landmarks", "192.0.2.1:6881", "198.51.100.7:3481",
        )
    )  # fmt: skip

    with_alternate = config_from_args(
        parse("--listen", "203.0.113.1:3478", "--alt", "203.0.113.2:3479")
    )
    assert default.relay_address == ("203.0.113.1", 4001)
    assert default.dht_address == ("203.0.113.1", 4002)
    # the usual RFC 5780 pair 3478/3479 leaves 3480 and 3481 for the relay and the DHT
    assert with_alternate.relay_address == ("203.0.113.1", 3480)
    assert with_alternate.dht_address == ("203.0.113.1", 3481)
    assert given.relay_address == ("203.0.113.1", 5000)
    assert given.dht_address == ("203.0.113.1", 6881)
    assert given.alternate == ("203.0.113.2", 4001)
    assert given.bootstrap == (("192.0.2.1", 6881), ("2001:db8::1", 6881))
    assert given.landmarks == (("192.0.2.1", 6881), ("198.51.100.7", 3481))
    assert default.landmarks == ()


async def test_the_gateways_directory_has_its_landmarks() -> None:
    async with open_internet(seed=6) as internet:
        host = internet.add_host([A_PRIMARY[0]])
        landmarks = (("192.0.2.1", 3481), ("198.51.100.7", 3481))
        config = GatewayConfig(listen=A_PRIMARY, landmarks=landmarks)
        assert Gateway(config, host, NodeKey.generate()).directory.landmarks == landmarks


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (["--alt", "203.0.113.2:4001", "--relay-port", "4001"], "relay port 4001 is one of the"),
        (["--dht-port", "4000"], "DHT port 4000 is one of the observer's ports"),
        (["--relay-port", "4009", "--dht-port", "4009"], "cannot share port 4009"),
    ],
)
def test_clashing_ports_are_refused_before_anything_binds(
    argv: list[str], why: str, caplog: pytest.LogCaptureFixture
) -> None:
    args = parse("--listen", "203.0.113.1:4000", *argv)
    with pytest.raises(ValueError, match=why):
        config_from_args(args)
    assert run_gateway(args) == 1
    assert why in caplog.text


def test_bad_ports_are_refused_by_the_parser() -> None:
    with pytest.raises(SystemExit):
        parse("--listen", "203.0.113.1:4000", "--relay-port", "70000")


async def test_two_gateways_and_a_node_that_detects_and_registers_through_them(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fast_registry = RegistryConfig(retry_interval=5.0)
    a_config = GatewayConfig(
        listen=A_PRIMARY,
        alternate=A_ALTERNATE,
        bootstrap=[(B_PRIMARY[0], 3480)],
        registry=fast_registry,
    )
    b_config = GatewayConfig(
        listen=B_PRIMARY, bootstrap=[(A_PRIMARY[0], 3480)], registry=fast_registry
    )
    async with open_internet(seed=5) as internet, trio.open_nursery() as nursery:
        a_host = internet.add_host([A_PRIMARY[0], A_ALTERNATE[0]], link=LinkProfile(latency=0.01))
        b_host = internet.add_host([B_PRIMARY[0]], link=LinkProfile(latency=0.04))
        a: Gateway = await nursery.start(
            lambda task_status: gateway_main(
                a_config, NodeKey.generate(), stack=a_host, task_status=task_status
            )
        )
        b: Gateway = await nursery.start(
            lambda task_status: gateway_main(
                b_config, NodeKey.generate(), stack=b_host, task_status=task_status
            )
        )
        site = add_site(internet.public, Preset.SYMMETRIC_SEQUENTIAL)
        profile = await detect_once([A_PRIMARY], 2.0, stack=site.host)
        key = NodeKey.generate()
        async with open_dht_node(site.host, DhtConfig(bootstrap=[a_config.dht_address])) as dht:
            directory = MainlineDirectory(dht, key, clock=clock)
            relays = {a_config.relay_address, b_config.relay_address}
            for _ in range(int(PATIENCE)):  # each gateway's announcement is stored at the other
                listed = set(await directory.list_relays())
                if listed == relays:
                    break
                await trio.sleep(1.0)
            assert listed == relays
            registry = RelayRegistry(directory, site.host, key)
            async with open_relay_registry(registry):
                with trio.fail_after(PATIENCE):
                    await registry.home.wait_value(lambda home: home is not None)
                home = registry.home.value
                measured = {info.endpoint for info in registry.relays()}
                resolver = MainlineDirectory(b.dht, b.key, clock=clock)
                record = await resolver.resolve_record(key.node_id.text())
                registrations = a.relay.statistics().registrations
        nursery.cancel_scope.cancel()

    assert profile.nat_type == "symmetric" and profile.mapping == "pd"
    assert home is not None and home.endpoint == a_config.relay_address
    assert home.node_id == a.key.node_id
    assert record is not None and record.home_relay == a_config.relay_address
    assert measured == relays
    assert registrations >= 1


A6_PRIMARY: Address = ("2001:db8::10", 3478)
A6_ALTERNATE: Address = ("2001:db8::11", 3490)


def test_a_dual_stack_gateway_takes_ipv6_addresses_beside_ipv4_ones() -> None:
    config = config_from_args(
        parse("--listen", "203.0.113.1:3478", "--alt", "203.0.113.2:3479",
              "--listen6", "[2001:db8::1]:3478", "--alt6", "[2001:db8::2]:3479")
    )  # fmt: skip
    single = config_from_args(parse("--listen", "[2001:db8::1]:3478"))
    assert config.dual_stack and not single.dual_stack
    assert config.relay_address6 == ("2001:db8::1", 3480)
    assert config.dht_address6 == ("2001:db8::1", 3481)
    assert config.alternate6 == ("2001:db8::2", 3479)
    assert single.relay_address6 is None and single.dht_address6 is None


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (["--listen", "[2001:db8::1]:3478", "--listen6", "[2001:db8::2]:3478"], "IPv4 address"),
        (["--listen", "203.0.113.1:3478", "--listen6", "203.0.113.2:3478"], "not an IPv6"),
        (["--listen", "203.0.113.1:3478", "--alt6", "[2001:db8::2]:3479"], "--alt6 needs"),
        (["--listen", "203.0.113.1:3478", "--listen6", "[2001:db8::1]:3478",
          "--alt6", "203.0.113.2:3479"], "--alt6 203.0.113.2 is not an IPv6"),
        (["--listen", "203.0.113.1:3478", "--alt", "[2001:db8::2]:3479"], "not an IPv4"),
        (["--listen", "203.0.113.1:3478", "--listen6", "[2001:db8::1]:3480",
          "--relay-port", "3480"], "relay port 3480 is one of the observer's"),
    ],
)  # fmt: skip
def test_a_dual_stack_gateway_with_mixed_up_versions_is_refused(
    argv: list[str], why: str, caplog: pytest.LogCaptureFixture
) -> None:
    args = parse(*argv)
    with pytest.raises(ValueError, match=why):
        config_from_args(args)
    assert run_gateway(args) == 1
    assert why in caplog.text


def walled(internet: Internet, prefix: str, name: str) -> SimHost:
    """A host at ``prefix``::10 behind a stateful IPv6 firewall of its own."""
    wall = internet.public.add_firewall(f"{prefix}/64", name=f"{name}-fw", link=SITE_LINK)
    return wall.add_host([f"{prefix}10"], name=name)


def node_config(host: SimHost, observer: Address, bootstrap: Address) -> NatConfig:
    """A node as ``macula-nat listen`` makes it: in the DHT of ``bootstrap``'s IP version
    (read-only while its profile says it is not reachable from anywhere), dual-stack when its
    host has both versions."""
    versions = {ip_version(ip) for ip in host.addresses}
    return NatConfig(
        stack=host,
        observers=(observer,),
        detect_timeout=1.0,
        dht=DhtConfig(
            bootstrap=[bootstrap],
            listen=(ANY_IPV6 if ip_version(bootstrap[0]) == 6 else ANY_IPV4, 0),
        ),
        key=NodeKey.generate(),
        listen=(ANY_IPV6 if 6 in versions else ANY_IPV4, 0),
        dual_stack=versions == {4, 6},
        relays=RegistryConfig(probe_window=0.2),
    )  # fmt: skip


@pytest.mark.parametrize("six_connects", [True, False], ids=["ipv6-connects", "dual-connects"])
async def test_an_ipv6_only_and_a_dual_stack_node_meet_through_a_dual_stack_gateway(
    six_connects: bool, autojump_clock: trio.testing.MockClock
) -> None:
    """The IPv6-only node joins the gateway's IPv6 swarm, the dual-stack one its IPv4 swarm:
    each finds the other's record (one storage behind both), and they punch over IPv6."""
    config = GatewayConfig(
        listen=A_PRIMARY, alternate=A_ALTERNATE, listen6=A6_PRIMARY, alternate6=A6_ALTERNATE
    )
    dht4, dht6 = config.dht_address, config.dht_address6
    assert dht6 is not None
    async with open_internet(seed=7) as internet, trio.open_nursery() as nursery:
        ips = [ip for ip, _ in config.addresses]
        gateway_host = internet.add_host(ips, link=SITE_LINK)
        gateway: Gateway = await nursery.start(
            lambda task_status: gateway_main(
                config, NodeKey.generate(), stack=gateway_host, task_status=task_status
            )
        )
        site = add_site(internet.public, Preset.PORT_RESTRICTED_CONE, name="dual",
                        link=SITE_LINK)  # fmt: skip
        internet.public.add_firewall("2001:db8:b::/64", name="dual-fw", link=SITE_LINK).attach(
            site.host, "2001:db8:b::10"
        )
        async with (
            open_nat_system(node_config(walled(internet, "2001:db8:a::", "six"), A6_PRIMARY,
                                        dht6)) as six,
            open_nat_system(node_config(site.host, A_PRIMARY, dht4)) as dual,
        ):  # fmt: skip
            with trio.fail_after(PATIENCE):
                homes = [(await node.wait_ready())[1].endpoint for node in (six, dual)]
            pair = (six, dual) if six_connects else (dual, six)
            with trio.fail_after(PATIENCE):
                connection = await pair[0].connector.connect(pair[1].node_id)
                accepted = await pair[1].connector.accept()
                await connection.method.wait_value(lambda m: m is ConnectionMethod.PUNCHED)
                await connection.send_message(b"hello")
                assert await accepted.receive_message() == b"hello"
            remote = connection.info().remote_address
            statistics = (gateway.dht.statistics(), gateway.dht6 and gateway.dht6.statistics())
            await connection.aclose()
        nursery.cancel_scope.cancel()
    assert homes[0] == config.relay_address6 and homes[1][1] == config.relay_address[1]
    assert ip_version(remote[0]) == 6
    four, six_side = statistics
    assert six_side is not None and four.queries_received and six_side.queries_received


async def test_a_dual_stack_gateways_tcp_relay_takes_both_versions(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With ``--relay-tcp`` the relay's TCP/TLS side listens on both versions too, at the
    relay's port on each of its addresses."""
    config = GatewayConfig(
        listen=A_PRIMARY, alternate=A_ALTERNATE, listen6=A6_PRIMARY, alternate6=A6_ALTERNATE,
        relay_tcp=TcpRelayConfig(),
    )  # fmt: skip
    assert config.relay_address6 is not None
    async with open_internet(seed=8) as internet, trio.open_nursery() as nursery:
        gateway_host = internet.add_host([ip for ip, _ in config.addresses], link=SITE_LINK)
        await nursery.start(
            lambda task_status: gateway_main(
                config, NodeKey.generate(), stack=gateway_host, task_status=task_status
            )
        )
        client = internet.add_host(["203.0.113.7", "2001:db8:7::7"], link=SITE_LINK)
        for relay in (config.relay_address, config.relay_address6):
            stream, _ = await client.connect_stream(relay)
            await stream.aclose()
        nursery.cancel_scope.cancel()
