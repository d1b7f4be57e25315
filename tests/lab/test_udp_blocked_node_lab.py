"""Issue 13, the full node through real Linux NAT: ``macula-nat listen``/``connect`` with
``--tcp-fallback`` on a host behind ``udp_blocked`` (nftables drops every UDP packet on its
router; TCP passes), the gateway (``macula-nat gateway --relay-tcp``) on the server.

The blocked node has no DHT (it is UDP): it registers with the gateway's relay over TCP/TLS
(named on its command line) and publishes and resolves records through that relay's directory.
It listens, and nodes behind a handful of other presets connect to it; it connects to
listeners behind the same presets: both ways, relayed over TCP. Then the rule is removed and
every connection is watched until it goes direct as the strategy says for the preset unblocked
(a port-restricted cone), within ``UPGRADE_BOUND_S``; the measured times are printed.

Presets: none, port-restricted cone and symmetric (a direct dial, a punch, a one-sided
birthday punch after the lift): the full matrix would run 6 x 2 node processes at once on two
cores, and the sim test runs every preset both ways.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trio

from tests.lab.connect_support import (
    NODE_LINE,
    ChatNode,
    Expectation,
    expect,
    gateway_arguments,
    start_chat_node,
)
from tests.lab.gateway_support import relay_address, start_cli_gateway
from tests.nat_lab import NatPreset, open_lab

pytestmark = pytest.mark.lab

PEERS = [NatPreset.NONE, NatPreset.PORT_RESTRICTED_CONE, NatPreset.SYMMETRIC]
DELAY_MS = 5.0
READY_TIMEOUT_S = 45.0
"""A node's start: python, detection (which times out behind the block), home relay."""
MESSAGE_TIMEOUT_S = 20.0
UPGRADE_BOUND_S = 5.0
UPGRADE_WATCH_S = 20.0
TEST_TIMEOUT_S = 300.0
DIRECT = re.compile(r"^\[[0-9a-f]{16}: now (?:direct|punched)\]$")


def node_id(node: ChatNode) -> str:
    found = node.find(NODE_LINE)
    assert found is not None, node.describe()
    return found[1].group(1)


async def chat(opener: ChatNode, target: ChatNode) -> None:
    """A message from ``opener`` (a connector) and the answer back."""
    await opener.wait_for(NODE_LINE, READY_TIMEOUT_S)
    opener_id, target_id = node_id(opener), node_id(target)
    await opener.say(f"hello {opener_id[:8]}")
    await target.wait_for(f"{opener_id[:16]}> hello {opener_id[:8]}$", MESSAGE_TIMEOUT_S)
    await target.say(f"back {target_id[:8]}")
    await opener.wait_for(f"{target_id[:16]}> back {target_id[:8]}$", MESSAGE_TIMEOUT_S)


async def test_a_full_node_behind_udp_blocked_connects_both_ways_then_goes_direct(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines: list[str] = []
    with trio.fail_after(TEST_TIMEOUT_S):
        async with open_lab([NatPreset.UDP_BLOCKED, *PEERS], delay_ms=DELAY_MS) as lab:
            server = lab.server
            await start_cli_gateway(server, server.primary_ip, server.alternate_ip, tmp_path,
                                    ["--relay-tcp"])  # fmt: skip
            gateway = gateway_arguments(server.primary_ip)
            ip, port = relay_address(server.primary_ip)
            fallback = ["--tcp-fallback", f"{ip}:{port}"]
            hotel = lab.sites[0]
            nodes: list[ChatNode] = []
            async with trio.open_nursery() as nursery:
                try:
                    blocked = await start_chat_node(
                        hotel.host, "blocked.listener", ["listen", *gateway, *fallback],
                        tmp_path, nursery,
                    )  # fmt: skip
                    nodes.append(blocked)
                    await blocked.wait_for("waiting for connections$", READY_TIMEOUT_S)
                    blocked_id = node_id(blocked)
                    await blocked.wait_for("NAT: UDP blocked", 1.0)
                    log = blocked.log.read_text(errors="replace")
                    assert "published the record through the relay" in log, blocked.describe()

                    listeners: list[tuple[ChatNode, str]] = []
                    for index, site in enumerate(lab.sites[1:], start=1):
                        listener = await start_chat_node(
                            site.host, f"peer{index}.listener", ["listen", *gateway],
                            tmp_path, nursery,
                        )  # fmt: skip
                        nodes.append(listener)
                        listeners.append((listener, site.preset.value))
                    pairs: list[tuple[str, ChatNode, ChatNode, Expectation]] = []
                    for index, (listener, preset) in enumerate(listeners, start=1):
                        await listener.wait_for("waiting for connections$", READY_TIMEOUT_S)
                        peer_id = node_id(listener)
                        site = lab.sites[index]
                        outbound = await start_chat_node(
                            hotel.host, f"blocked.to.{preset}",
                            ["connect", peer_id, *gateway, *fallback], tmp_path, nursery,
                        )  # fmt: skip
                        inbound = await start_chat_node(
                            site.host, f"{preset}.to.blocked",
                            ["connect", blocked_id, *gateway], tmp_path, nursery,
                        )  # fmt: skip
                        nodes += [outbound, inbound]
                        await chat(outbound, listener)
                        await chat(inbound, blocked)
                        for connector in (outbound, inbound):
                            methods = [m for _, m in connector.methods()]
                            assert methods == ["relayed"], connector.describe()
                        pairs.append((f"udp_blocked -> {preset}", outbound, listener,
                                      expect(site.host, hotel.host)))  # fmt: skip
                        pairs.append((f"udp_blocked <- {preset}", inbound, blocked,
                                      expect(hotel.host, site.host)))  # fmt: skip

                    assert hotel.router is not None
                    lifted = trio.current_time()
                    await hotel.router.lift_udp_block()
                    for name, connector, _, plan in pairs:
                        watch = max(0.0, lifted + UPGRADE_WATCH_S - trio.current_time())
                        try:
                            when, _ = await connector.wait_for(DIRECT, watch)
                        except AssertionError:
                            took = None
                        else:
                            took = when - lifted
                        after = "still relayed" if took is None else f"direct after {took:.2f} s"
                        lines.append(f"{name}: relayed over TCP; lifted -> {after} "
                                     f"(strategy: {plan.method})")  # fmt: skip
                        if plan.method == "relayed":
                            assert took is None, connector.describe()
                        else:
                            assert took is not None and took <= UPGRADE_BOUND_S, (
                                lines[-1], connector.describe())  # fmt: skip
                    for _, connector, target, _ in pairs:  # still one conversation
                        await connector.say("after")
                        await target.wait_for(r"[0-9a-f]{16}> after$", MESSAGE_TIMEOUT_S)
                finally:
                    with trio.CancelScope(shield=True):
                        for node in reversed(nodes):
                            await node.stop()
                    nursery.cancel_scope.cancel()
    with capsys.disabled():
        print("\nudp_blocked full node (lab):\n  " + "\n  ".join(lines))
