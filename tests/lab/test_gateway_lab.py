"""A gateway and two nodes behind real NATs: DHT records with home relays, relayed sessions, and
the relay's per-session bandwidth limit, on real sockets in the lab's namespaces.

The server namespace runs the gateway (observer on 203.0.113.100:3478 / .101:3479, relay on
.100:3480, DHT on .100:3481), alone: its DHT node stores its own relay announcement (it is the
nearest node there is). Each node (``tests/lab/lab_node.py``)
runs a read-only DHT node bootstrapped to the gateway's, registers with the relay it finds
announced there as its home relay (the registry publishes its record), resolves the other's
record, and talks to it through a relay session.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from macula_nat.relay.settings import RelaySettings
from tests.lab.gateway_support import (
    STEP_TIMEOUT_S,
    LabProcess,
    dht_address,
    relay_address,
    start_cli_gateway,
    start_limited_gateway,
    start_script,
)
from tests.nat_lab import Lab, NatPreset, open_lab

pytestmark = pytest.mark.lab

SITES = [NatPreset.PORT_RESTRICTED_CONE, NatPreset.SYMMETRIC]
ECHOES = 20
LIMIT = 256 * 1024.0
"""The relay's per-session limit for the bandwidth test, in payload bytes a second."""
FLOOD_RATE = 2 * LIMIT
FLOOD_SECONDS = 3.0
FLOOD_SIZE = 1000
TEST_TIMEOUT_S = 90.0


async def join_both(lab: Lab, extra: list[str], logs: Path) -> tuple[LabProcess, LabProcess]:
    """Nodes A (initiator, first site) and B (second site): both home on the gateway's relay
    and have resolved each other's record (naming that relay); returns once the relay session
    from A to B is open at both ends."""
    primary = lab.server.primary_ip
    common = ["node", "--dht", dht_address(primary), *extra]
    a = await start_script(lab.sites[0].host, "a", [*common, "--initiator"], logs)
    b = await start_script(lab.sites[1].host, "b", common, logs)
    homes: dict[str, dict[str, Any]] = {}

    async def home(node: LabProcess) -> None:
        homes[node.name] = await node.event("home")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(home, a)
        nursery.start_soon(home, b)
    assert homes["a"]["home"] == relay_address(primary)
    assert homes["b"]["home"] == relay_address(primary)
    await a.tell(homes["b"]["node_id"])
    await b.tell(homes["a"]["node_id"])
    for node, peer in ((a, "b"), (b, "a")):
        resolved = await node.event("resolved")
        assert resolved["peer"] == homes[peer]["node_id"]
        assert resolved["home_relay"] == relay_address(primary)  # from the peer's record
    await a.event("session")
    await b.event("session")
    return a, b


async def test_two_nodes_behind_nat_find_each_other_and_talk_through_the_gateway(
    tmp_path: Path,
) -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with open_lab(SITES) as lab:
            server = lab.server
            await start_cli_gateway(server, server.primary_ip, server.alternate_ip, tmp_path)
            a, b = await join_both(lab, ["--mode", "echo", "--count", str(ECHOES)], tmp_path)
            sent = await a.event("result")  # every datagram echoed back intact
            assert sent["intact"] == ECHOES and "failed_at" not in sent, sent
            received = await b.event("result")  # after A closed the session
            assert received == {"event": "result", "intact": ECHOES, "corrupt": 0}
            await a.tell("exit")
            await b.tell("exit")


async def test_the_relay_holds_a_session_to_its_bandwidth_limit(tmp_path: Path) -> None:
    burst = RelaySettings(bandwidth_limit=LIMIT).burst
    with trio.fail_after(TEST_TIMEOUT_S):
        async with open_lab(SITES) as lab:
            server = lab.server
            await start_limited_gateway(
                server, server.primary_ip, server.alternate_ip, LIMIT, tmp_path
            )
            flood = [
                "--mode", "flood", "--rate", str(FLOOD_RATE),
                "--seconds", str(FLOOD_SECONDS), "--size", str(FLOOD_SIZE),
            ]  # fmt: skip
            a, b = await join_both(lab, flood, tmp_path)
            await b.event("receiving")
            await a.tell("go")
            sent = await a.event("result", STEP_TIMEOUT_S)
            received = await b.event("result", STEP_TIMEOUT_S)
            await a.tell("exit")
            await b.tell("exit")

    arrivals = received["arrivals"]
    assert received["corrupt"] == 0
    assert sent["sent_bytes"] >= 1.5 * LIMIT * FLOOD_SECONDS  # the sender did push faster
    span = arrivals[-1][0] - arrivals[0][0]
    total = sum(size for _, size in arrivals)
    # the bucket starts full: `burst` bytes pass at once, then the limit's rate
    assert span > 0.8 * FLOOD_SECONDS
    rate = (total - burst) / span
    assert rate == pytest.approx(LIMIT, rel=0.10), (rate, sent, total, span)
    # and the rate after the first second alone (long past the burst) holds it too
    late = [(t, size) for t, size in arrivals if t >= 1.0]
    late_rate = sum(size for _, size in late[1:]) / (late[-1][0] - late[0][0])
    assert late_rate == pytest.approx(LIMIT, rel=0.10), (late_rate, sent)
