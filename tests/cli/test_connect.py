"""``macula-nat listen`` / ``connect NODE_ID``: two nodes behind NATs join through a gateway
(observer, relay, DHT), find each other and chat."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Sequence

import attrs
import pytest
import trio
from trio.testing import MockClock

from macula_nat.cli import build_parser
from macula_nat.cli.connect import connect_main, listen_main, node_config
from macula_nat.cli.gateway import gateway_main
from macula_nat.gateway import GatewayConfig
from macula_nat.identity import NodeId, NodeKey
from macula_nat.net.sim import Internet, LinkProfile, Preset, add_site, open_internet
from macula_nat.system import NatSystem

PRIMARY = ("198.51.100.10", 3478)
ALTERNATE = ("198.51.100.11", 3479)
GATEWAY_ARGUMENTS = ["--observer", "198.51.100.10:3478", "--bootstrap", "198.51.100.10:3481"]


async def lines_then_wait(lines: list[str], wait: float) -> AsyncIterator[str]:
    for line in lines:
        yield line
        await trio.sleep(0.1)
    await trio.sleep(wait)  # keep the connection open to hear the other side


async def start_gateway(internet: Internet, nursery: trio.Nursery) -> None:
    """The gateway every node here joins through: observer, relay and DHT."""
    host = internet.add_host([PRIMARY[0], ALTERNATE[0]], link=LinkProfile(latency=0.005))
    gateway = GatewayConfig(listen=PRIMARY, alternate=ALTERNATE)
    await nursery.start(
        lambda task_status: gateway_main(
            gateway, NodeKey.generate(), stack=host, task_status=task_status
        )
    )


async def start_listener(
    internet: Internet,
    nursery: trio.Nursery,
    preset: Preset,
    lines: AsyncIterator[str],
    emit: Callable[[str], None],
    options: Sequence[str] = (),
) -> NatSystem:
    """``macula-nat listen *options`` behind ``preset``, once it waits for connections."""
    site = add_site(internet.public, preset)
    args = build_parser().parse_args(["listen", *GATEWAY_ARGUMENTS, *options])
    config = node_config(args, NodeKey.generate(), stack=site.host)
    listen = functools.partial(
        listen_main, config, lines, emit, targets=args.targets, timeout=args.timeout
    )
    system: NatSystem = await nursery.start(listen)
    return system


async def run_connect(
    internet: Internet,
    target: NodeId,
    preset: Preset,
    lines: AsyncIterator[str],
    emit: Callable[[str], None],
    timeout: float | None = None,
) -> int:
    """``macula-nat connect TARGET`` behind ``preset``, to its end; its exit status."""
    site = add_site(internet.public, preset)
    args = build_parser().parse_args(["connect", target.text(), *GATEWAY_ARGUMENTS])
    config = node_config(args, NodeKey.generate(), stack=site.host)
    return await connect_main(
        config, args.target, args.timeout if timeout is None else timeout, lines, emit
    )


async def test_listen_and_connect_chat_through_a_gateway(autojump_clock: MockClock) -> None:
    heard_by_listener: list[str] = []
    heard_by_connector: list[str] = []
    async with open_internet(seed=3) as internet, trio.open_nursery() as nursery:
        await start_gateway(internet, nursery)
        listener = await start_listener(
            internet,
            nursery,
            Preset.PORT_RESTRICTED_CONE,
            lines_then_wait(["hello from the listener"], 60),
            heard_by_listener.append,
        )
        with trio.fail_after(120):
            status = await run_connect(
                internet,
                listener.node_id,
                Preset.RESTRICTED_CONE,
                lines_then_wait(["hello from the connector"], 5),
                heard_by_connector.append,
            )
        nursery.cancel_scope.cancel()
    assert status == 0
    assert heard_by_listener[0] == f"node {listener.node_id.text()}"
    assert "waiting for connections" in heard_by_listener
    assert any(line.endswith("> hello from the connector") for line in heard_by_listener)
    assert any(line.endswith("> hello from the listener") for line in heard_by_connector)
    assert any("now punched" in line for line in heard_by_connector)


async def test_connect_to_an_unknown_node_fails_with_status_1(autojump_clock: MockClock) -> None:
    heard: list[str] = []
    nobody = NodeKey.generate().node_id
    async with open_internet(seed=4) as internet, trio.open_nursery() as nursery:
        await start_gateway(internet, nursery)
        with trio.fail_after(120):
            status = await run_connect(
                internet, nobody, Preset.FULL_CONE, lines_then_wait([], 0), heard.append, 5.0
            )
        nursery.cancel_scope.cancel()
    assert status == 1
    assert heard[-1].startswith(f"could not connect to {nobody.short()}")


def test_the_parser_refuses_a_bad_node_id_and_missing_gateways() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(
            ["connect", "xyz", "--observer", "1.2.3.4:5", "--bootstrap", "1.2.3.4:6"]
        )
    with pytest.raises(SystemExit):
        build_parser().parse_args(["listen"])


async def test_the_listener_chats_with_one_connection_after_another(
    autojump_clock: MockClock,
) -> None:
    heard: list[list[str]] = [[], []]
    say, said = trio.open_memory_channel[str](0)

    async def listener_lines() -> AsyncIterator[str]:  # a generator, as standard input is
        async for line in said:
            yield line

    async with open_internet(seed=5) as internet, trio.open_nursery() as nursery:
        await start_gateway(internet, nursery)
        listener = await start_listener(
            internet, nursery, Preset.FULL_CONE, listener_lines(), lambda line: None
        )
        for turn in range(2):
            with trio.fail_after(120):
                async with trio.open_nursery() as chat:
                    chat.start_soon(
                        run_connect,
                        internet,
                        listener.node_id,
                        Preset.RESTRICTED_CONE,
                        lines_then_wait([], 10),
                        heard[turn].append,
                    )
                    await trio.sleep(5)
                    await say.send(f"to connection {turn}")
        nursery.cancel_scope.cancel()
    for turn in range(2):
        assert any(line.endswith(f"> to connection {turn}") for line in heard[turn]), heard[turn]


async def test_the_listener_chats_with_several_peers_at_once(autojump_clock: MockClock) -> None:
    """Two peers connected at the same time: each is heard under its name, and a line typed
    at the listener reaches both; a line typed before anyone connected waits for a peer."""
    heard: list[list[str]] = [[], []]
    listener_heard: list[str] = []
    both_connected = trio.Event()
    say, said = trio.open_memory_channel[str](1)

    def listener_emit(line: str) -> None:
        listener_heard.append(line)
        if sum(heard.startswith("connected to ") for heard in listener_heard) == 2:
            both_connected.set()

    async def listener_lines() -> AsyncIterator[str]:
        async for line in said:
            yield line

    async with open_internet(seed=6) as internet, trio.open_nursery() as nursery:
        await start_gateway(internet, nursery)
        listener = await start_listener(
            internet, nursery, Preset.FULL_CONE, listener_lines(), listener_emit
        )
        await say.send("before anyone")
        with trio.fail_after(120):
            async with trio.open_nursery() as peers:
                for index in range(2):
                    peers.start_soon(
                        run_connect,
                        internet,
                        listener.node_id,
                        Preset.RESTRICTED_CONE,
                        lines_then_wait([f"hello from {index}"], 30),
                        heard[index].append,
                    )
                await both_connected.wait()
                await say.send("to everyone")
        nursery.cancel_scope.cancel()
    assert any(line.endswith("> before anyone") for lines in heard for line in lines)
    for index in range(2):
        assert any(line.endswith("> to everyone") for line in heard[index]), heard[index]
        assert any(line.endswith(f"> hello from {index}") for line in listener_heard)


async def test_a_listener_also_connects_to_the_nodes_it_is_given(
    autojump_clock: MockClock,
) -> None:
    """``listen --connect A NOBODY``: it reaches A and chats with it as with a peer that
    connected to it; NOBODY (no record) is said to fail and the node goes on listening."""
    heard_by_a: list[str] = []
    heard_by_b: list[str] = []
    nobody = NodeKey.generate().node_id
    async with open_internet(seed=7) as internet, trio.open_nursery() as nursery:
        await start_gateway(internet, nursery)
        a = await start_listener(
            internet,
            nursery,
            Preset.PORT_RESTRICTED_CONE,
            lines_then_wait(["hello from a"], 3600),
            heard_by_a.append,
        )
        options = ["--connect", a.node_id.text(), nobody.text(), "--timeout", "5"]
        b = await start_listener(
            internet,
            nursery,
            Preset.RESTRICTED_CONE,
            lines_then_wait(["hello from b"], 3600),
            heard_by_b.append,
            options,
        )
        await trio.sleep(60)  # virtual time: both connected, chatted, punched
        nursery.cancel_scope.cancel()
    assert f"connected to {b.node_id.short()} (relayed)" in heard_by_a, heard_by_a
    assert f"connected to {a.node_id.short()} (relayed)" in heard_by_b, heard_by_b
    assert f"{b.node_id.short()}> hello from b" in heard_by_a, heard_by_a
    assert f"{a.node_id.short()}> hello from a" in heard_by_b, heard_by_b
    assert any(line.startswith(f"could not connect to {nobody.short()}") for line in heard_by_b)
    assert "waiting for connections" in heard_by_b
    assert any(line == f"[{a.node_id.short()}: now punched]" for line in heard_by_b), heard_by_b


def test_the_tcp_options_reach_the_gateway_and_node_configs() -> None:
    """Issue 13: ``gateway --relay-tcp [--relay-tcp-port N]`` serves the relay over TCP/TLS,
    ``listen``/``connect --tcp-fallback`` reaches a relay over it when UDP is blocked."""
    from macula_nat.cli.gateway import config_from_args
    from macula_nat.relay import TcpFallback, TcpRelayConfig

    gateway = ["gateway", "--listen", "198.51.100.10:3478"]
    assert config_from_args(build_parser().parse_args(gateway)).relay_tcp is None
    tcp = config_from_args(build_parser().parse_args([*gateway, "--relay-tcp"]))
    assert tcp.relay_tcp == TcpRelayConfig()
    on_443 = build_parser().parse_args([*gateway, "--relay-tcp", "--relay-tcp-port", "443"])
    assert config_from_args(on_443).relay_tcp == TcpRelayConfig(port=443)
    node = build_parser().parse_args(["listen", *GATEWAY_ARGUMENTS])
    assert node_config(node, NodeKey.generate()).relays.tcp_fallback is None
    node = build_parser().parse_args(["listen", *GATEWAY_ARGUMENTS, "--tcp-fallback"])
    assert node_config(node, NodeKey.generate()).relays.tcp_fallback == TcpFallback()
    named = ["listen", *GATEWAY_ARGUMENTS, "--tcp-fallback", "198.51.100.10:3480"]
    node = build_parser().parse_args(named)
    fallback = TcpFallback(relays=(("198.51.100.10", 3480),))
    assert node_config(node, NodeKey.generate()).relays.tcp_fallback == fallback


def test_the_port_mapping_option_reaches_the_node_config() -> None:
    """Issue 13: ``--port-mapping`` alone asks with all three protocols, named ones alone."""
    from macula_nat.portmap import PortMapConfig, Protocol

    def mapping(*extra: str) -> PortMapConfig | None:
        args = build_parser().parse_args(["listen", *GATEWAY_ARGUMENTS, *extra])
        return node_config(args, NodeKey.generate()).port_mapping

    assert mapping() is None
    assert mapping("--port-mapping") == PortMapConfig()
    assert mapping("--port-mapping", "natpmp", "pcp") == PortMapConfig(
        protocols=(Protocol.NATPMP, Protocol.PCP)
    )
    with pytest.raises(SystemExit):
        build_parser().parse_args(["listen", *GATEWAY_ARGUMENTS, "--port-mapping", "ssdp"])


async def test_the_listener_says_which_port_its_router_mapped(autojump_clock: MockClock) -> None:
    """``listen --port-mapping`` behind a symmetric NAT whose router answers NAT-PMP prints the
    mapped port, once (the router is named here: the simulated host has no route table)."""
    heard: list[str] = []
    printed = trio.Event()

    def emit(line: str) -> None:
        heard.append(line)
        if line.startswith("port mapping"):
            printed.set()

    async with open_internet(seed=3) as internet, trio.open_nursery() as nursery:
        await start_gateway(internet, nursery)
        site = add_site(internet.public, Preset.SYMMETRIC_RANDOM)
        nat = site.nats[-1]
        nat.enable_port_mapping(natpmp=True, pcp=False)
        args = build_parser().parse_args(["listen", *GATEWAY_ARGUMENTS, "--port-mapping"])
        config = node_config(args, NodeKey.generate(), stack=site.host)
        assert config.port_mapping is not None
        config = attrs.evolve(
            config, port_mapping=attrs.evolve(config.port_mapping, gateway=nat.lan_address)
        )
        with trio.fail_after(60):
            system: NatSystem = await nursery.start(
                listen_main, config, lines_then_wait([], 3600), emit
            )
            assert system.port_mapper is not None
            mapping = await system.port_mapper.mapping.wait_value(lambda m: m is not None)
            assert mapping is not None
            await printed.wait()
            await trio.sleep(5)  # a later detection run prints nothing more
        line = "port mapping {}:{} (the router forwards it to this node)".format(*mapping.external)
        assert [h for h in heard if h.startswith("port mapping")] == [line]
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("bootstrap", "dht_ip"),
    [("public", "0.0.0.0"), ("gateway.example:3481", "0.0.0.0"), ("[2001:db8::1]:3481", "::")],
)
def test_the_dht_socket_speaks_the_first_bootstraps_ip_version(bootstrap: str, dht_ip: str) -> None:
    """A name or ``public`` joins over IPv4; an IPv6 literal over IPv6 (BEP 32)."""
    args = build_parser().parse_args(
        ["listen", "--observer", "198.51.100.10:3478", "--bootstrap", bootstrap]
    )
    assert node_config(args, NodeKey.generate()).dht.listen[0] == dht_ip
