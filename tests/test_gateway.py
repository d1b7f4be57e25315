"""The gateway: its configuration, its command line, and two gateways on the simulated internet."""

from __future__ import annotations

import argparse

import pytest
import trio
import trio.testing

from macula_nat.cli.detect import detect_once
from macula_nat.cli.gateway import config_from_args, gateway_main, run_gateway
from macula_nat.cli.parsers import add_gateway_parser
from macula_nat.dht.config import DhtConfig
from macula_nat.dht.node import open_dht_node
from macula_nat.directory.mainline import MainlineDirectory
from macula_nat.gateway import Gateway, GatewayConfig
from macula_nat.identity import NodeKey
from macula_nat.net.address import Address
from macula_nat.net.sim import LinkProfile, Preset, add_site, open_internet
from macula_nat.relay.registry import RegistryConfig, RelayRegistry, open_relay_registry

EPOCH = 1_700_000_000.0
A_PRIMARY: Address = ("198.51.100.10", 3478)
A_ALTERNATE: Address = ("198.51.100.11", 3490)
B_PRIMARY: Address = ("203.0.113.20", 3478)
PATIENCE = 120.0


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
