"""Test helpers: run the independent UDP probe in lab namespaces and read its verdict."""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path
from typing import Any

import trio

from tests.nat_lab import Host, Lab, Node

PROBE = str(Path(__file__).with_name("udp_probe.py"))
PORTS = (3478, 3479)
READY_TIMEOUT_S = 10.0
PROBE_TIMEOUT_S = 20.0


async def start_probe_server(node: Node, args: list[str]) -> trio.Process:
    """Start ``udp_probe.py ARGS`` in ``node`` and wait until it reports ready."""
    process = await node.start_python([PROBE, *args], stdout=subprocess.PIPE)
    assert process.stdout is not None
    seen = b""
    with trio.fail_after(READY_TIMEOUT_S):
        while b"ready\n" not in seen:
            chunk = await process.stdout.receive_some(64)
            assert chunk, f"probe {args} exited before ready"
            seen += chunk
    return process


async def start_reflector(lab: Lab) -> trio.Process:
    server = lab.server
    return await start_probe_server(
        server, ["reflect", server.primary_ip, server.alternate_ip, *map(str, PORTS)]
    )


async def run_probe(host: Host, args: list[str]) -> Any:
    """Run ``udp_probe.py ARGS`` in ``host``; return its JSON output."""
    with trio.fail_after(PROBE_TIMEOUT_S):
        done = await host.run_python([PROBE, *args])
    return json.loads(done.stdout)


async def measure(lab: Lab, host: Host) -> dict[str, Any]:
    """The probe's raw mapping/filtering/allocation measurements from ``host``."""
    server = lab.server
    result: dict[str, Any] = await run_probe(
        host, ["classify", host.ip, server.primary_ip, server.alternate_ip, *map(str, PORTS)]
    )
    return result


def _mapping(m: dict[str, Any]) -> str:
    a1, b1, b2, a2 = (tuple(m[k]) for k in ("a1", "b1", "b2", "a2"))
    if a1 == b1 == b2 == a2:
        return "ei"
    if a1 == a2 and b1 == b2 and a1 != b1:
        return "hd"
    if len({a1, b1, b2, a2}) == 4:
        return "pd"
    return f"inconsistent {m}"


def _filtering(f: dict[str, Any], a: str, b: str) -> str:
    p1, p2 = PORTS
    if f["control"] != [a, p1]:
        return f"control answer missing or misrouted: {f}"
    both = f["change_both"] == [b, p2]
    port = f["change_port"] == [a, p2]
    if both and port:
        return "ei"
    if port and f["change_both"] is None:
        return "hd"
    if f["change_port"] is None and f["change_both"] is None:
        return "pd"
    return f"inconsistent {f}"


def _allocation(alloc: dict[str, Any]) -> str:
    local, mapped = alloc["local_ports"], alloc["mapped_ports"]
    if None in mapped:
        return f"unanswered {alloc}"
    if mapped == local:
        return "pp"
    deltas = {b - a for a, b in itertools.pairwise(mapped)}
    if len(deltas) == 1 and 0 < abs(next(iter(deltas))) <= 16:
        return "pc"
    return "rd"


def classify(lab: Lab, host: Host, result: dict[str, Any]) -> dict[str, object]:
    """RFC 4787 classification of the probe's measurements, shaped like
    ``attrs.asdict(NatClassification)``; nonsense stays a descriptive string, so that the
    comparison with the expectation fails and shows it."""
    server = lab.server
    mapped = result["mapped"]
    for key, value in mapped.items():
        assert value is not None, f"mapping probe {key} unanswered: {result}"
    nat = tuple(mapped["a1"]) != tuple(result["local"])
    if not nat:
        assert result["local"] == [host.ip, result["local"][1]]
    else:
        assert mapped["a1"][0] == host.public_ip, result
    return {
        "nat": nat,
        "mapping": _mapping(mapped),
        "filtering": _filtering(result["filtering"], server.primary_ip, server.alternate_ip),
        "allocation": _allocation(result["allocation"]),
    }
