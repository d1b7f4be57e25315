"""Issue 13 through real Linux NAT: a host behind ``udp_blocked`` (nftables drops every UDP
packet on its router, TCP passes) registers with a relay over TCP/TLS and relays datagrams
with a host behind each of the other presets, both ways; once the rule is removed a
registration over UDP succeeds (the time is printed and bounded).

The processes are ``tests/lab/relay_tcp_node.py`` (a relay with TCP, and relay clients):
the full node (QUIC over the relay, the upgrade to direct) runs over the Mainline DHT as its
directory, which is UDP, so a node with no UDP has no directory in this lab yet. The simulated
internet runs the full node (``tests/traversal/test_udp_blocked.py``).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import trio

from tests.lab.gateway_support import LabProcess
from tests.nat_lab import NatPreset, Node, open_lab

pytestmark = pytest.mark.lab

PEERS = [
    NatPreset.NONE,
    NatPreset.FULL_CONE,
    NatPreset.RESTRICTED_CONE,
    NatPreset.PORT_RESTRICTED_CONE,
    NatPreset.SYMMETRIC,
    NatPreset.SYMMETRIC_SEQUENTIAL,
]
RELAY_PORT = 3480
DELAY_MS = 5.0
STEP_TIMEOUT_S = 40.0
TEST_TIMEOUT_S = 240.0
UDP_BACK_BOUND_S = 5.0


async def start(node: Node, name: str, args: list[str], logs: Path) -> LabProcess:
    log = logs / f"{name}.log"
    with log.open("wb") as err:
        process = await node.start_python(
            ["-m", "tests.lab.relay_tcp_node", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err.fileno(),
        )
    return LabProcess(name, process, log)


async def exchange(sender: LabProcess, receiver: LabProcess, text: str) -> None:
    await sender.tell(f"send {text}")
    received = await receiver.event("received", STEP_TIMEOUT_S)
    assert received["data"] == text, (received, receiver.describe())


async def test_udp_blocked_relays_over_tcp_with_every_preset_both_ways_then_udp_returns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        async with open_lab([NatPreset.UDP_BLOCKED, *PEERS], delay_ms=DELAY_MS) as lab:
            where = f"{lab.server.primary_ip}:{RELAY_PORT}"
            relay = await start(lab.server, "relay", ["relay", where], tmp_path)
            relay_id = (await relay.event("ready", STEP_TIMEOUT_S))["relay_id"]
            hotel = lab.sites[0]
            blocked = await start(hotel.host, "blocked", ["node", where, relay_id, "tcp"], tmp_path)
            registered = await blocked.event("registered", STEP_TIMEOUT_S)
            blocked_id = registered["node"]
            await blocked.tell("udp 2")  # the firewall is up: UDP gets nowhere
            assert (await blocked.event("udp_failed", STEP_TIMEOUT_S))["took"] is None

            for index, site in enumerate(lab.sites[1:], start=1):
                peer = await start(site.host, f"peer{index}", ["node", where, relay_id, "udp"],
                                   tmp_path)  # fmt: skip
                peer_id = (await peer.event("registered", STEP_TIMEOUT_S))["node"]
                for opener, target, target_id in ((blocked, peer, peer_id),
                                                  (peer, blocked, blocked_id)):  # fmt: skip
                    await target.tell("accept")
                    await opener.tell(f"connect {target_id}")
                    await opener.event("session", STEP_TIMEOUT_S)
                    await target.event("session", STEP_TIMEOUT_S)
                    await exchange(opener, target, f"to-{site.preset.value}-{index}")
                    await exchange(target, opener, f"from-{site.preset.value}-{index}")

            assert hotel.router is not None
            await hotel.router.lift_udp_block()
            await blocked.tell("udp 60")
            back = (await blocked.event("udp_registered", STEP_TIMEOUT_S))["took"]
    with capsys.disabled():
        print(f"\nudp_blocked lab: relayed over TCP/TLS with {len(PEERS)} presets both ways; "
              f"registered over UDP {back:.2f} s after the rule was removed")  # fmt: skip
    assert back <= UDP_BACK_BOUND_S
