"""The lab harness itself: teardown, impairment, NAT state reset, isolation, punching."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.lab.helpers import measure, run_probe, start_probe_server, start_reflector
from tests.nat_lab import LabError, NatPreset, SiteConfig, open_lab, remove_leftovers, topology
from tests.nat_lab.names import NETNS_DIR, own_prefix

pytestmark = pytest.mark.lab

ECHO_PORT = "7"


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def _exists(netns: str) -> bool:
    return (NETNS_DIR / netns).exists()


async def _child_pids(pid: int) -> list[int]:
    children = trio.Path(f"/proc/{pid}/task/{pid}/children")
    for _ in range(500):
        found = (await children.read_text()).split()
        if found:
            return [int(p) for p in found]
        await trio.sleep(0.01)
    raise AssertionError(f"pid {pid} started no child within 5 s")


async def test_teardown_when_body_raises() -> None:
    names: tuple[str, ...] = ()
    pids: list[int] = []
    with pytest.raises(RuntimeError, match="boom"):
        async with open_lab([NatPreset.PORT_RESTRICTED_CONE, NatPreset.NONE]) as lab:
            names = lab.namespaces
            assert all(_exists(ns) for ns in names)
            direct = await lab.sites[0].host.start_process(["sleep", "600"])
            # The shell's child is a process the lab never saw: the namespace sweep gets it.
            shell = await lab.server.start_process(["sh", "-c", "sleep 600 & wait"])
            pids = [direct.pid, shell.pid, *await _child_pids(shell.pid)]
            assert all(_alive(p) for p in pids)
            raise RuntimeError("boom")
    assert len(names) == 5
    assert not [ns for ns in names if _exists(ns)]
    for _ in range(500):
        if not any(_alive(p) for p in pids):
            break
        await trio.sleep(0.01)
    assert not [p for p in pids if _alive(p)]


async def test_teardown_when_cancelled() -> None:
    names: tuple[str, ...] = ()
    with trio.move_on_after(0.5) as scope:
        async with open_lab([NatPreset.FULL_CONE]) as lab:
            names = lab.namespaces
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert names
    assert not [ns for ns in names if _exists(ns)]


async def test_leftovers_of_own_prefix_removed() -> None:
    stale = f"{own_prefix()}999999-pub"
    with trio.fail_after(5):
        await trio.run_process(["ip", "netns", "add", stale])
    try:
        assert stale in await remove_leftovers()
        assert not _exists(stale)
    finally:
        if _exists(stale):
            await trio.run_process(["ip", "netns", "del", stale])


async def _pings(lab: Any, count: int, wait_s: float) -> dict[str, Any]:
    host = lab.sites[0].host
    await start_probe_server(lab.server, ["echo", lab.server.primary_ip, ECHO_PORT])
    result: dict[str, Any] = await run_probe(
        host, ["ping", host.ip, lab.server.primary_ip, ECHO_PORT, str(count), str(wait_s)]
    )
    return result


async def test_delay_visible_in_round_trip() -> None:
    async with open_lab([NatPreset.PORT_RESTRICTED_CONE], delay_ms=20) as lab:
        assert lab.impairment in ("netem", "wire")
        rtts = (await _pings(lab, 10, 1.0))["rtts"]
    # 20 ms each way on the site's access link: at least 40 ms per round trip.
    assert len(rtts) == 10
    assert min(rtts) >= 0.040, rtts
    assert statistics.median(rtts) < 0.040 + 0.25, rtts


async def test_loss_drops_some_packets() -> None:
    async with open_lab([NatPreset.NONE], loss=0.2) as lab:
        result = await _pings(lab, 60, 0.15)
    # Each round trip survives with probability 0.8 ** 2 = 0.64.
    delivered = len(result["rtts"]) / result["sent"]
    assert 0.35 < delivered < 0.9, result


async def test_reset_nat_state_forgets_mappings() -> None:
    async with open_lab([NatPreset.RESTRICTED_CONE]) as lab:
        await start_reflector(lab)
        await measure(lab, lab.sites[0].host)
        router = lab.sites[0].router
        assert router is not None
        listed = await router.run(["conntrack", "-L"])
        assert b"udp" in listed.stdout
        learned = await router.run(["nft", "list", "map", "ip", "lab_nat", "f_rev"])
        assert b"elements" in learned.stdout
        await lab.reset_nat_state()
        listed = await router.run(["conntrack", "-L"])
        assert b"udp" not in listed.stdout
        for kind, name in (("map", "f_rev"), ("set", "r_allow")):
            learned = await router.run(["nft", "list", kind, "ip", "lab_nat", name])
            assert b"elements" not in learned.stdout


async def test_hosts_share_the_router_and_nothing_leaves_the_lab() -> None:
    async with open_lab([SiteConfig(NatPreset.PORT_RESTRICTED_CONE, hosts=2)]) as lab:
        await start_reflector(lab)
        site = lab.sites[0]
        assert site.router is not None
        first, second = site.hosts
        results = [await measure(lab, h) for h in site.hosts]
        assert {r["mapped"]["a1"][0] for r in results} == {site.router.wan_ip}
        # Hosts reach each other over the LAN bridge, unNATed.
        await start_probe_server(second, ["echo", second.ip, ECHO_PORT])
        lan = await run_probe(first, ["ping", first.ip, second.ip, ECHO_PORT, "3", "1.0"])
        assert len(lan["rtts"]) == 3
        # No namespace of the lab has a route out of the documentation/private ranges.
        for node in (site.router, first, lab.server, lab.pub):
            out = await node.run(["ip", "route", "get", "192.0.2.1"], check=False)
            assert out.returncode != 0 or b"via 10.0.1.1" in out.stdout, (node.label, out)


async def _punch(lab: Any) -> list[Any]:
    """Both sites' first hosts send to each other's public address, port 40000, at once."""
    a, b = (s.host for s in lab.sites)
    heard: list[Any] = [None, None]

    async def side(i: int, me: Any, peer: Any) -> None:
        heard[i] = await run_probe(me, ["punch", me.ip, "40000", peer.public_ip, "40000", "1.5"])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(side, 0, a, b)
        nursery.start_soon(side, 1, b, a)
    return heard


async def test_two_port_restricted_cones_punch_through() -> None:
    async with open_lab([NatPreset.PORT_RESTRICTED_CONE] * 2) as lab:
        heard = await _punch(lab)
        a, b = (s.host for s in lab.sites)
    assert heard == [[b.public_ip, 40000], [a.public_ip, 40000]]


async def test_symmetric_defeats_naive_punching() -> None:
    async with open_lab([NatPreset.PORT_RESTRICTED_CONE, NatPreset.SYMMETRIC]) as lab:
        heard = await _punch(lab)
    assert heard == [None, None]


async def test_failed_build_leaves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(topology, "router_ruleset", lambda *_a, **_k: "not an nft ruleset\n")
    with pytest.raises(LabError, match="exited"):
        async with open_lab([NatPreset.FULL_CONE]):
            raise AssertionError("the body must not run")
    ours = [p.name for p in NETNS_DIR.iterdir() if p.name.startswith(own_prefix())]
    assert ours == []


async def test_python_helper_runs_this_interpreter_inside_the_namespace() -> None:
    script = (
        "import socket, sys, tests.nat_lab\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "s.bind((sys.argv[1], 0))\n"
        "print(sys.executable)\n"
    )
    async with open_lab([NatPreset.SYMMETRIC]) as lab:
        host = lab.sites[0].host
        with trio.fail_after(10):
            done = await host.run_python(["-c", script, host.ip])
    assert done.stdout.decode().strip() == sys.executable
