"""Issue 13, the full node through real Linux NAT: ``macula-nat listen --tcp-fallback`` on a
host behind ``udp_blocked`` (nftables drops every UDP packet on its router; TCP passes), the
gateway (``macula-nat gateway --relay-tcp``) on the server, a node behind every other preset.

The blocked nodes have no DHT (it is UDP): they register with the gateway's relay over TCP/TLS
(named on their command line) and publish and resolve records through that relay's directory.
Both ways, with one process per site: behind the block ``inbound`` listens and ``outbound``
(``listen --connect`` every peer) dials; behind each preset of ``UDP_PRESETS`` one peer listens
(``outbound`` reaches it) and connects to ``inbound`` (``--connect``). Two nodes behind the
block, so that each direction is a pair of its own (a node keeps one connection per peer).
Every connection starts relayed over TCP. Then the rule is removed and each one is watched
until it goes direct, if the strategy plans a direct path for the pair once the block is gone
(the blocked site is then a port-restricted cone), within ``UPGRADE_BOUND_S``; a pair the plan
relays must stay relayed. The measured times are printed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trio

from macula_nat.traversal.strategy import Method, Plan
from tests.lab.connect_support import (
    NODE_LINE,
    ChatNode,
    expect,
    gateway_arguments,
    start_chat_node,
)
from tests.lab.gateway_support import relay_address, start_cli_gateway
from tests.nat_lab import UDP_PRESETS, NatPreset, open_lab

pytestmark = pytest.mark.lab

DELAY_MS = 5.0
READY_TIMEOUT_S = 60.0
"""A node's start: python, detection (which times out behind the block), home relay; up to a
dozen of them start at once on two cores."""
CONNECT_TIMEOUT_S = 45.0
MESSAGE_TIMEOUT_S = 30.0
UPGRADE_BOUND_S = 5.0
UPGRADE_WATCH_S = 20.0
TEST_TIMEOUT_S = 230.0


def node_id(node: ChatNode) -> str:
    found = node.find(NODE_LINE)
    assert found is not None, node.describe()
    return found[1].group(1)


def connected(peer: str) -> re.Pattern[str]:
    """A node's line saying its connection with ``peer`` (a node id) is up, and how."""
    return re.compile(rf"^connected to {peer[:16]} \((\w+)\)$")


def upgraded(peer: str) -> re.Pattern[str]:
    return re.compile(rf"^\[{peer[:16]}: now (direct|punched)\]$")


def methods(node: ChatNode, peer: str) -> list[str]:
    """Every method ``node``'s connection with ``peer`` had, in order."""
    line = re.compile(rf"^(?:connected to {peer[:16]} \((\w+)\)|\[{peer[:16]}: now (\w+)\])$")
    found = []
    for _, text in node.lines:
        match = line.match(text)
        if match is not None:
            found.append(match.group(1) or match.group(2))
    return found


async def heard(node: ChatNode, sender: str, text: str) -> None:
    await node.wait_for(rf"^{sender[:16]}> {re.escape(text)}$", MESSAGE_TIMEOUT_S)


async def test_a_full_node_behind_udp_blocked_reaches_every_preset_both_ways_then_goes_direct(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines: list[str] = []
    report: list[str] = []
    began = trio.current_time()

    def phase(name: str) -> None:
        lines.append(f"{trio.current_time() - began:6.1f} s  {name}")

    with trio.fail_after(TEST_TIMEOUT_S):
        async with open_lab([NatPreset.UDP_BLOCKED, *UDP_PRESETS], delay_ms=DELAY_MS) as lab:
            phase("lab up")
            server = lab.server
            await start_cli_gateway(server, server.primary_ip, server.alternate_ip, tmp_path,
                                    ["--relay-tcp"])  # fmt: skip
            gateway = gateway_arguments(server.primary_ip)
            ip, port = relay_address(server.primary_ip)
            fallback = ["--tcp-fallback", f"{ip}:{port}"]
            hotel, sites = lab.sites[0], lab.sites[1:]
            nodes: list[ChatNode] = []
            async with trio.open_nursery() as nursery:

                async def start_blocked(name: str, extra: list[str]) -> ChatNode:
                    """A node behind the block, ready and saying so."""
                    node = await start_chat_node(
                        hotel.host, name, ["listen", *gateway, *fallback, *extra],
                        tmp_path, nursery,
                    )  # fmt: skip
                    nodes.append(node)
                    await node.wait_for("waiting for connections$", READY_TIMEOUT_S)
                    await node.wait_for("NAT: UDP blocked", 1.0)
                    return node

                try:
                    inbound = await start_blocked("blocked.inbound", [])
                    inbound_id = node_id(inbound)
                    log = inbound.log.read_text(errors="replace")
                    assert "published the record through the relay" in log, inbound.describe()
                    phase("blocked listener ready")

                    reach_inbound = ["--connect", inbound_id, "--timeout", f"{CONNECT_TIMEOUT_S}"]
                    peers: list[ChatNode] = []
                    for site in sites:
                        peer = await start_chat_node(
                            site.host, site.preset.value, ["listen", *gateway, *reach_inbound],
                            tmp_path, nursery,
                        )  # fmt: skip
                        nodes.append(peer)
                        peers.append(peer)
                    for peer in peers:
                        await peer.wait_for("waiting for connections$", READY_TIMEOUT_S)
                    peer_ids = [node_id(peer) for peer in peers]
                    phase(f"{len(peers)} peers ready")

                    outbound = await start_blocked(
                        "blocked.outbound",
                        ["--connect", *peer_ids, "--timeout", f"{CONNECT_TIMEOUT_S}"],
                    )
                    outbound_id = node_id(outbound)
                    for peer, peer_id in zip(peers, peer_ids, strict=True):
                        await outbound.wait_for(connected(peer_id), CONNECT_TIMEOUT_S)
                        await peer.wait_for(connected(inbound_id), CONNECT_TIMEOUT_S)
                        await peer.wait_for(connected(outbound_id), CONNECT_TIMEOUT_S)
                    phase("blocked dialler ready, every connection up")

                    for peer, peer_id in zip(peers, peer_ids, strict=True):
                        await peer.say(f"hello {peer_id[:8]}")
                    for peer_id in peer_ids:
                        await heard(inbound, peer_id, f"hello {peer_id[:8]}")
                        await heard(outbound, peer_id, f"hello {peer_id[:8]}")
                    await inbound.say("back in")
                    await outbound.say("back out")
                    for peer in peers:
                        await heard(peer, inbound_id, "back in")
                        await heard(peer, outbound_id, "back out")
                    pairs: list[tuple[str, ChatNode, str, Plan]] = []
                    for site, peer, peer_id in zip(sites, peers, peer_ids, strict=True):
                        preset = site.preset.value
                        assert methods(outbound, peer_id) == ["relayed"], outbound.describe()
                        assert methods(peer, inbound_id) == ["relayed"], peer.describe()
                        pairs.append((f"udp_blocked -> {preset}", outbound, peer_id,
                                      expect(site.host, hotel.host).plan))  # fmt: skip
                        pairs.append((f"udp_blocked <- {preset}", peer, inbound_id,
                                      expect(hotel.host, site.host).plan))  # fmt: skip
                    phase("chatted both ways over the TCP relay")

                    assert hotel.router is not None
                    lifted = trio.current_time()
                    failed: list[str] = []
                    await hotel.router.lift_udp_block()
                    for name, connector, target, plan in pairs:
                        watch = max(0.0, lifted + UPGRADE_WATCH_S - trio.current_time())
                        try:
                            when, match = await connector.wait_for(upgraded(target), watch)
                        except AssertionError:
                            took, method = None, "relayed"
                        else:
                            took, method = when - lifted, match.group(1)
                        after = "still relayed" if took is None else f"{method} after {took:.2f} s"
                        report.append(f"{name:40} relayed over TCP; lifted -> {after} "
                                      f"(plan: {plan.method})")  # fmt: skip
                        if plan.method in (Method.DIRECT, Method.PUNCH):
                            if took is None or took > UPGRADE_BOUND_S:
                                failed.append(connector.describe())
                        elif took is not None:  # the plan relays: it must stay so
                            failed.append(connector.describe())
                    assert not failed, "\n".join([*report, *failed])
                    phase("every connection as the strategy plans after the lift")
                    await outbound.say("after")
                    for peer in peers:
                        await heard(peer, outbound_id, "after")
                        await peer.say("after")
                    for peer_id in peer_ids:
                        await heard(inbound, peer_id, "after")
                    phase("still one conversation each")
                finally:
                    with trio.CancelScope(shield=True):
                        async with trio.open_nursery() as stopping:
                            for node in nodes:
                                stopping.start_soon(node.stop)
                    nursery.cancel_scope.cancel()
    phase("lab down")
    with capsys.disabled():
        print("\nudp_blocked full node (lab):\n  " + "\n  ".join([*report, *lines]))
