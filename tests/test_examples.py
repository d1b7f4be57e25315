"""The examples in ``examples/``: each one's ``main`` on the simulated internet, and each one's
command line."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Callable
from functools import partial
from types import ModuleType

import pytest
import trio
from trio.testing import MockClock

from examples import connection_manager, nat_monitor, p2p_chat, relay_server
from macula_nat import NotDetected, open_actor
from macula_nat.connection import Connection
from macula_nat.dht.config import DhtConfig
from macula_nat.gateway import Gateway, GatewayConfig
from macula_nat.net.sim import LinkProfile, Preset, add_site, open_internet
from macula_nat.relay import RegistryConfig
from macula_nat.system import NatConfig, NatSystem, open_nat_system

from .traversal.world import PRIMARY, open_world

PATIENCE = 60.0
"""Simulated seconds any one step may take."""


class Output:
    """An example's ``emit``: keeps the lines, and lets a test wait for them."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._new_line = trio.Event()

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        self._new_line.set()
        self._new_line = trio.Event()

    def has(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def matching(self, text: str) -> list[str]:
        return [line for line in self.lines if text in line]

    async def wait_for(self, text: str, count: int = 1) -> str:
        """The last line containing ``text``, once ``count`` such lines were printed."""
        with trio.fail_after(PATIENCE):
            while len(self.matching(text)) < count:
                await self._new_line.wait()
        return self.matching(text)[-1]


# -- p2p_chat ------------------------------------------------------------------------------------


async def test_chat_lines_arrive_both_ways_and_the_upgrade_to_a_punched_path_is_shown(
    autojump_clock: MockClock,
) -> None:
    async with open_world() as world:
        alice = await world.node(Preset.PORT_RESTRICTED_CONE, "alice")
        bob = await world.node(Preset.PORT_RESTRICTED_CONE, "bob")
        alice_out, bob_out = Output(), Output()

        async def alice_types() -> AsyncIterator[str]:
            yield "hello bob"
            yield "how are you?"
            # she ends the chat once she heard bob and saw the hole punched
            await alice_out.wait_for("fine, thanks")
            await alice_out.wait_for("* connection is punched")

        async def bob_types() -> AsyncIterator[str]:
            yield "fine, thanks"
            await trio.sleep_forever()  # bob never ends it: alice leaving does

        with trio.fail_after(PATIENCE):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(lambda: p2p_chat.main(alice, alice_types(), emit=alice_out))
                nursery.start_soon(
                    lambda: p2p_chat.main(bob, bob_types(), alice.node_id.text(), emit=bob_out)
                )

    a, b = alice.node_id.short(), bob.node_id.short()
    assert alice_out.lines[0] == f"waiting for a peer; my node id is {alice.node_id.text()}"
    assert f"* chatting with {b}" in alice_out.lines
    assert f"* chatting with {a}" in bob_out.lines
    assert bob_out.matching(f"{a}: ") == [f"{a}: hello bob", f"{a}: how are you?"]
    assert alice_out.matching(f"{b}: ") == [f"{b}: fine, thanks"]
    for out in (alice_out, bob_out):  # relayed at once, then punched, and the change shown
        methods = out.matching("* connection is ")
        assert methods == ["* connection is relayed", "* connection is punched"]
    assert bob_out.lines[-1] == f"* {a} left"


# -- nat_monitor ---------------------------------------------------------------------------------


async def test_the_monitor_reports_the_first_detection_and_a_change(
    autojump_clock: MockClock,
) -> None:
    async with open_world() as world:
        site = add_site(world.internet.public, Preset.PORT_RESTRICTED_CONE, link=world.site_link)
        config = NatConfig(
            stack=site.host, observers=(PRIMARY,), detect_timeout=1.0, directory=world.directory
        )
        out, late = Output(), Output()
        async with open_nat_system(config) as system, trio.open_nursery() as nursery:
            # started with the system: the first detection is still running
            monitor = await nursery.start(partial(nat_monitor.main, refresh_every=10, emit=out))
            with pytest.raises(NotDetected):
                await monitor.call(nat_monitor.GetProfile())
            first = await out.wait_for("NAT detected")
            detected = system.detector.get_local_profile()
            assert await monitor.call(nat_monitor.GetProfile()) == detected
            # a monitor started later says what the NAT is now
            await nursery.start(partial(nat_monitor.main, emit=late))
            await late.wait_for("NAT now")
            # the NAT forgets its mappings, as after a reboot: a refresh (the monitor's cast)
            # sees the node's socket at a new public port
            site.nats[0].rebind()
            monitor.cast(nat_monitor.ForceRefresh())
            change = await out.wait_for("NAT changed")
            changed = system.detector.get_local_profile()
            assert await monitor.call(nat_monitor.GetProfile()) == changed
            nursery.cancel_scope.cancel()

    assert out.lines[0] == first == f"NAT detected: {nat_monitor.describe(detected)}"
    assert first.startswith("NAT detected: port-restricted cone at 203.0.113.")
    assert late.lines[0] == f"NAT now: {nat_monitor.describe(detected)}"
    assert changed.public_port != detected.public_port
    assert change == (
        f"NAT changed (public port): {nat_monitor.describe(detected)} -> "
        f"{nat_monitor.describe(changed)}"
    )


# -- relay_server --------------------------------------------------------------------------------

GATEWAY = ("198.51.100.20", 3478)
GATEWAY_ALTERNATE = ("198.51.100.21", 3479)
LINK = LinkProfile(latency=0.005)


async def test_the_relay_server_prints_a_relayed_sessions_start_and_end(
    autojump_clock: MockClock,
) -> None:
    config = GatewayConfig(listen=GATEWAY, alternate=GATEWAY_ALTERNATE, max_sessions=10)
    out = Output()
    async with open_internet(seed=3) as internet, trio.open_nursery() as nursery:
        host = internet.add_host([GATEWAY[0], GATEWAY_ALTERNATE[0]], link=LINK)
        gateway: Gateway = await nursery.start(
            lambda task_status: relay_server.main(
                config, stack=host, stats_interval=5.0, emit=out, task_status=task_status
            )
        )
        # two nodes as on the real network: they detect against the gateway's observer and
        # find its relay, and each other's records, through its DHT node
        dht = DhtConfig(bootstrap=[config.dht_address])

        def node(preset: Preset) -> NatConfig:
            return NatConfig(
                stack=add_site(internet.public, preset, link=LINK).host,
                observers=(GATEWAY,),
                detect_timeout=1.0,
                dht=dht,
                relays=RegistryConfig(probe_window=0.2),
            )

        async with (  # symmetric NATs with random ports: no punch, the relay carries it all
            open_nat_system(node(Preset.SYMMETRIC_RANDOM)) as alice,
            open_nat_system(node(Preset.SYMMETRIC_RANDOM)) as bob,
        ):
            with trio.fail_after(PATIENCE):
                for system in (alice, bob):
                    await system.wait_ready()
                await published(alice, bob)
                connection = await alice.connector.connect(bob.node_id)
                accepted = await bob.connector.accept()
                await connection.send_message(b"through the relay")
                assert await accepted.receive_message() == b"through the relay"
                started = await out.wait_for("session start")
                await connection.aclose()
                ended = await out.wait_for("session end")
                stats = await out.wait_for("stats:")
        nursery.cancel_scope.cancel()

    a, b = alice.node_id.short(), bob.node_id.short()
    assert out.lines[0].startswith(f"gateway {gateway.key.node_id.short()}: STUN observer ")
    assert "relay 198.51.100.20:3480, DHT node 198.51.100.20:3481" in out.lines[0]
    assert started == f"session start: {a} -> {b}"
    assert ended.startswith(f"session end:   {a} -> {b} (")
    assert int(ended.split("(")[1].split()[0]) > len(b"through the relay")
    assert "2 nodes registered" in stats and "1 opened, 1 ended" in stats


async def published(*systems: NatSystem) -> None:
    """Wait until each system's record (profile and home relay) resolves through the DHT."""
    for system in systems:
        while True:
            record = await systems[0].directory.resolve_record(system.node_id.text())
            if record is not None and record.profile is not None and record.home_relay:
                break
            await trio.sleep(0.5)


# -- connection_manager --------------------------------------------------------------------------


async def accept_all(system: NatSystem, accepted: list[Connection]) -> None:
    while True:
        accepted.append(await system.connector.accept())


async def test_the_connection_manager_reconnects_a_closed_connection_and_disconnects_at_the_end(
    autojump_clock: MockClock,
) -> None:
    async with open_world() as world:
        me = await world.node(Preset.RESTRICTED_CONE, "me")
        bob = await world.node(Preset.OPEN_INTERNET, "bob")  # dialled directly
        carol = await world.node(Preset.PORT_RESTRICTED_CONE, "carol")  # relayed, then punched
        at_bob: list[Connection] = []
        at_carol: list[Connection] = []
        out = Output()
        b, c = bob.node_id.short(), carol.node_id.short()
        async with trio.open_nursery() as peers:
            peers.start_soon(accept_all, bob, at_bob)
            peers.start_soon(accept_all, carol, at_carol)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    lambda: connection_manager.main(
                        me,
                        [bob.node_id, carol.node_id.text()],
                        duration=40.0,
                        report_every=10.0,
                        emit=out,
                    )
                )
                await out.wait_for(f"{b}: connected")
                await out.wait_for(f"{c}: connected")
                await trio.sleep(5)
                await at_carol[0].aclose()  # carol hangs up: the manager calls her back
                await out.wait_for(f"{c}: connection closed; reconnecting in 1 s")
                await out.wait_for(f"{c}: connected", count=2)
            # main has returned (after its duration): every connection it held was closed
            with trio.fail_after(PATIENCE):
                for connection in (at_bob[-1], at_carol[-1]):
                    await connection.wait_closed()
            peers.cancel_scope.cancel()

    assert len(at_bob) == 1 and len(at_carol) == 2
    assert out.matching(f"{b}: connected") == [f"{b}: connected (direct)"]
    assert out.matching(f"{c}: connected") == [f"{c}: connected (relayed)"] * 2
    assert out.has(f"{b}: direct, rtt ") and out.has(f"{c}: punched, rtt ")
    assert out.lines[-2:] == [f"{b}: disconnected", f"{c}: disconnected"]


async def test_the_connection_manager_actors_call_and_cast_api(autojump_clock: MockClock) -> None:
    """Example 5 is an actor: ``Manage`` and ``Status`` calls, a ``Forget`` cast."""
    async with open_world() as world:
        me = await world.node(Preset.RESTRICTED_CONE, "me")
        bob = await world.node(Preset.OPEN_INTERNET, "bob")
        at_bob: list[Connection] = []
        out = Output()
        manager = connection_manager.ConnectionManager(me.connector, emit=out)
        async with trio.open_nursery() as peers, open_actor(manager) as ref:
            peers.start_soon(accept_all, bob, at_bob)
            await ref.call(connection_manager.Manage(bob.node_id))
            await out.wait_for(f"{bob.node_id.short()}: connected (direct)")
            status = await ref.call(connection_manager.Status())
            assert list(status) == [bob.node_id] and status[bob.node_id][0] == "direct"
            ref.cast(connection_manager.Forget(bob.node_id))
            with trio.fail_after(PATIENCE):
                await at_bob[0].wait_closed()
            assert await ref.call(connection_manager.Status()) == {}
            peers.cancel_scope.cancel()
    assert out.lines[-1] == f"{bob.node_id.short()}: disconnected"


# -- the command lines ---------------------------------------------------------------------------

EXAMPLES = [p2p_chat, nat_monitor, relay_server, connection_manager]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda module: module.__name__.split(".")[-1])
def test_each_example_explains_its_command_line(
    example: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    build: Callable[[], argparse.ArgumentParser] = example.build_parser
    with pytest.raises(SystemExit) as raised:
        build().parse_args(["--help"])
    assert raised.value.code == 0
    help_text = capsys.readouterr().out
    assert help_text.startswith("usage: ")
    assert example.__doc__ is not None and example.__doc__.split("\n")[0][:30] in help_text


def test_the_command_lines_defaults() -> None:
    chat = p2p_chat.build_parser().parse_args(["--gateway", "203.0.113.10:3478"])
    assert chat.gateway == [("203.0.113.10", 3478)] and chat.connect is None
    manager = connection_manager.build_parser().parse_args(
        ["--gateway", "203.0.113.10:3478", "--duration", "60", "ab" * 32]
    )
    assert manager.peers == ["ab" * 32] and manager.duration == 60.0
    monitor = nat_monitor.build_parser().parse_args(["--gateway", "203.0.113.10:3478"])
    assert monitor.refresh is None
    relay = relay_server.config_from_args(
        relay_server.build_parser().parse_args(
            ["--listen", "203.0.113.10:3478", "--alt", "203.0.113.11:3479"]
        )
    )
    assert relay.relay_address == ("203.0.113.10", 3480)
    assert relay.dht_address == ("203.0.113.10", 3481)
    assert relay.max_sessions == 100
