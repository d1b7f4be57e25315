"""Bootstrap hosts by name or IP (``public`` for the Mainline routers), resolved with an
injected resolver or on loopback only, and BEP 42 ids for nodes that know their external IP.
Nothing here touches the Internet."""

from __future__ import annotations

import argparse

import attrs
import pytest
import trio
import trio.testing

from macula_nat.actors.errors import NoProc
from macula_nat.cli.arguments import bootstrap_argument
from macula_nat.cli.main import build_parser
from macula_nat.dht.bootstrap import PUBLIC_BOOTSTRAP, bootstrap_hosts, resolve, resolve_hosts
from macula_nat.dht.config import DhtConfig
from macula_nat.dht.krpc import Ping, Response, decode, encode, new_transaction_id
from macula_nat.dht.node import DhtNode, open_dht_node
from macula_nat.dht.node_id import NodeId
from macula_nat.dht.secure_id import is_secure
from macula_nat.gateway import GatewayConfig
from macula_nat.net import Address, RealUdpStack
from macula_nat.net.sim import open_internet

from .swarm import open_swarm, public_config


def test_hosts_are_ips_or_names_and_public_is_the_mainline_routers() -> None:
    assert bootstrap_hosts([("gw-1.example.net", 6881), ["2001:DB8::1", 1]]) == (
        ("gw-1.example.net", 6881),
        ("2001:db8::1", 1),
    )
    assert (
        bootstrap_hosts(["public"]) == PUBLIC_BOOTSTRAP == DhtConfig(bootstrap=["public"]).bootstrap
    )
    assert ("router.bittorrent.com", 6881) in PUBLIC_BOOTSTRAP
    assert (
        GatewayConfig(listen=("127.0.0.1", 3478), bootstrap=["public"]).bootstrap
        == PUBLIC_BOOTSTRAP
    )


@pytest.mark.parametrize(
    "bad",
    [("", 1), ("-bad.example", 1), ("a" * 64 + ".example", 1), ("ok.example", 0), ("x", "1"), "x"],
)
def test_bad_hosts_are_refused_clearly(bad: object) -> None:
    with pytest.raises(ValueError, match=r"bootstrap host|neither|port"):
        bootstrap_hosts([bad])  # type: ignore[list-item]


async def test_names_resolve_in_order_once_each_and_a_failing_name_is_skipped() -> None:
    asked: list[str] = []

    async def resolver(host: str, port: int) -> list[Address]:
        asked.append(host)
        await trio.lowlevel.checkpoint()
        if host == "gone.example":
            raise OSError("no such name")
        return {
            "a.example": [("10.0.0.1", port), ("fd00::1", port)],
            "b.example": [("10.0.0.1", port)],
        }[host]

    hosts = [("a.example", 1), ("gone.example", 1), ("10.0.0.9", 1), ("b.example", 1)]
    assert await resolve_hosts(hosts, resolver) == [
        ("10.0.0.1", 1),
        ("fd00::1", 1),
        ("10.0.0.9", 1),
    ]
    assert await resolve_hosts(hosts, resolver, family=6) == [("fd00::1", 1)]
    assert sorted(asked) == [
        "a.example",
        "a.example",
        "b.example",
        "b.example",
        "gone.example",
        "gone.example",
    ]


async def test_a_resolver_that_hangs_is_given_up_on(autojump_clock: trio.testing.MockClock) -> None:
    async def hangs(host: str, port: int) -> list[Address]:
        await trio.sleep_forever()
        raise AssertionError

    start = trio.current_time()
    assert await resolve_hosts([("slow.example", 1), ("10.0.0.2", 2)], hangs) == [("10.0.0.2", 2)]
    assert trio.current_time() - start == pytest.approx(5.0)


async def test_a_node_joins_through_a_gateway_named_in_its_bootstrap(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_internet(seed=31) as internet, open_swarm(internet, 10) as swarm:
        gateway = swarm.nodes[0].contact.address

        async def resolver(host: str, port: int) -> list[Address]:
            await trio.lowlevel.checkpoint()
            return [(gateway[0], port)] if host == "gw.example" else []

        stack, config = public_config(internet, DhtConfig())
        config = attrs.evolve(config, bootstrap=[("gw.example", gateway[1])], resolver=resolver)
        node = await swarm.add(stack, config, join=False)
        assert await node.bootstrap() >= 8  # the gateway, then the nodes near our id


async def test_localhost_resolves_on_loopback_and_the_node_joins() -> None:
    """The system resolver, for a loopback name only: the node keeps its socket's IP version."""
    assert ("127.0.0.1", 1) in await resolve("localhost", 1)
    stack = RealUdpStack()
    config = DhtConfig(listen=("127.0.0.1", 0))
    async with open_dht_node(stack, config) as first:
        joining = attrs.evolve(config, bootstrap=[("localhost", first.contact.address[1])])
        async with open_dht_node(stack, joining) as second:
            with trio.fail_after(10):
                assert await second.bootstrap() == 1
            assert second.routing_table.closest(first.node_id)[0].node_id == first.node_id


async def test_a_node_that_knows_its_external_ip_takes_a_bep42_id_and_counts_insecure_ones(
    autojump_clock: trio.testing.MockClock,
) -> None:
    external = "124.31.75.21"  # BEP 42's first example address
    async with open_internet(seed=32) as internet:
        stack, config = public_config(internet, DhtConfig(external_ip=external))
        node = DhtNode(stack, config)
        assert is_secure(node.node_id, external)
        assert not is_secure(DhtNode(stack, DhtConfig()).node_id, external)  # ~2**-21
        # A query from a public address (in-memory only) under an id not derived from it:
        # counted, still answered (lenient, as libtorrent by default).
        host = internet.add_host([external])
        async with open_swarm(internet, 1) as swarm:
            target = swarm.nodes[0]
            endpoint = await host.bind((external, 0))
            ping = Ping(transaction_id=new_transaction_id(), sender=NodeId.from_hex("00" * 20))
            await endpoint.send_to(encode(ping), target.contact.address)
            with trio.fail_after(5):
                reply = decode((await endpoint.receive_from())[0])
            assert isinstance(reply, Response)
            assert target.statistics().insecure_ids == 1


def test_the_command_line_takes_public_names_and_ips() -> None:
    assert bootstrap_argument("public") == "public"
    assert bootstrap_argument("gw.example.net:3481") == ("gw.example.net", 3481)
    assert bootstrap_argument("[2001:db8::1]:3481") == ("2001:db8::1", 3481)
    for bad in ("gw.example.net", ":1", "2001:db8::1:3481", "gw:0", "gw:65536"):
        with pytest.raises(argparse.ArgumentTypeError):
            bootstrap_argument(bad)
    parsed = build_parser().parse_args(
        ["gateway", "--listen", "127.0.0.1:3478", "--bootstrap", "public", "gw.example.net:3481"]
    )
    assert DhtConfig(bootstrap=parsed.bootstrap).bootstrap == (
        *PUBLIC_BOOTSTRAP,
        ("gw.example.net", 3481),
    )


async def test_a_node_stopped_while_its_first_bootstrap_waits_stops_cleanly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Stopping abandons the pending pings; the bootstrap that waited on them must end, not
    go on into a lookup on a node that no longer has a socket (a crash at every such stop)."""
    async with open_internet(seed=33) as internet, open_swarm(internet, 3) as swarm:
        answering = swarm.nodes[0].contact.address
        stack, config = public_config(internet, DhtConfig())
        silent = ("198.51.100.7", 6881)  # nobody there: its ping waits for its timeout
        config = attrs.evolve(config, bootstrap=[answering, silent])
        async with open_dht_node(stack, config) as node:
            await trio.sleep(0.5)  # the answering node's reply is in; the silent ping waits
            assert len(node.routing_table) == 1
        # Leaving the block stopped the node while the silent ping was pending: no crash,
        # and the node is stopped, not half-running.
        with pytest.raises(NoProc):
            await node.ping(answering)
