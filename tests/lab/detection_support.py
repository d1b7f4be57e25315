"""Running STUN servers and NAT classifiers inside the lab: shared by the detection lab tests
and ``tests/bench/detection.py``."""

import json
import re
import shutil
import subprocess
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio

from tests.nat_lab import Host, Lab, NatPreset, Node, Server

T = TypeVar("T")

PORTS = (3478, 3479)
"""The primary and alternate port of either RFC 5780 server (primary and alternate IP alike)."""
DETECT_TIMEOUT_S = 2.0
"""Our detector's ``--timeout``: eight detections share two CPUs here, so not the bare minimum."""
DEFAULT_TIMEOUT_S = 5.0
"""The detector's own default timeout (``macula-nat detect`` without ``--timeout``)."""
READY_TIMEOUT_S = 10.0
RUN_MARGIN_S = 15.0
"""Bound on a detection beyond its own (1.5 x timeout): python start-up on a loaded machine."""
NATDISCOVERY_TIMEOUT_S = 30.0
"""natdiscovery waits about 3 s per unanswered test, and runs its tests one after another."""

SEQUENTIAL_DELTA = {NatPreset.SYMMETRIC_SEQUENTIAL: 1}
"""The port delta of the ``pc`` presets (see ``tests/nat_lab/README.md``)."""

_READY_SCRIPT = """\
import socket, sys, time
from macula_nat.wire import stun
deadline = time.monotonic() + float(sys.argv[1])
for target in sys.argv[2:]:
    ip, port = target.rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.05)
        while True:
            if time.monotonic() > deadline:
                sys.exit(f"no STUN answer from {target}")
            sock.sendto(stun.binding_request().encode(), (ip, int(port)))
            try:
                if stun.is_stun(sock.recv(2048)):
                    break
            except TimeoutError:
                pass
"""


def coturn_missing() -> str | None:
    """Why coturn's tools cannot run here, or None."""
    missing = [t for t in ("turnserver", "turnutils_natdiscovery") if shutil.which(t) is None]
    if missing:
        return f"{', '.join(missing)} not installed (Debian package coturn; `make lab-deps`)"
    return None


def require_coturn() -> None:
    reason = coturn_missing()
    if reason is not None:
        pytest.skip(reason)


def _server_addresses(server: Server) -> list[str]:
    return [f"{ip}:{port}" for ip in (server.primary_ip, server.alternate_ip) for port in PORTS]


async def _wait_answering(server: Server, node: Node | None = None) -> None:
    """Return once the server's four RFC 5780 addresses answer Binding requests from ``node``
    (default: the server itself)."""
    with trio.fail_after(READY_TIMEOUT_S + 5):
        done = await (node or server).run_python(
            ["-c", _READY_SCRIPT, str(READY_TIMEOUT_S), *_server_addresses(server)], check=False
        )
    assert done.returncode == 0, done.stderr.decode()


async def start_our_observer(lab: Lab) -> str:
    """Run ``macula-nat observe`` with both server addresses; return the primary ``IP:PORT``."""
    server = lab.server
    primary, alternate = f"{server.primary_ip}:{PORTS[0]}", f"{server.alternate_ip}:{PORTS[1]}"
    await server.start_python(
        ["-m", "macula_nat", "observe", "--listen", primary, "--alt", alternate],
        stderr=subprocess.DEVNULL,
    )
    await _wait_answering(server)
    return primary


async def start_coturn(lab: Lab, workdir: Path) -> str:
    """Run coturn's ``turnserver`` as an RFC 5780 STUN server with both server addresses;
    return the primary ``IP:PORT``. Its pid file and database go to ``workdir``."""
    server = lab.server
    argv = [
        "turnserver",
        "-n",
        "--stun-only",
        "--no-tls",
        "--no-dtls",
        "--no-cli",
        "--log-file=stdout",
        f"--pidfile={workdir / 'turnserver.pid'}",
        f"--userdb={workdir / 'turndb'}",
        f"--listening-ip={server.primary_ip}",
        f"--listening-ip={server.alternate_ip}",
        f"--listening-port={PORTS[0]}",
        f"--alt-listening-port={PORTS[1]}",
    ]
    await server.start_process(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    await _wait_answering(server)
    return f"{server.primary_ip}:{PORTS[0]}"


def detect_argv(observer: str, timeout: float | None) -> list[str]:
    """``python`` arguments for ``macula-nat detect --json`` against ``observer`` (None: the
    command's default timeout)."""
    argv = ["-m", "macula_nat", "detect", "--observer", observer]
    return argv if timeout is None else [*argv, "--timeout", f"{timeout:g}"]


async def run_detector(host: Host, observer: str, timeout: float | None = DETECT_TIMEOUT_S) -> Any:
    """Our detector's profile (JSON) from ``host``, or the reason it has none, as a string."""
    with trio.fail_after(1.5 * (timeout or DEFAULT_TIMEOUT_S) + RUN_MARGIN_S):
        done = await host.run_python([*detect_argv(observer, timeout), "--json"], check=False)
    if done.returncode != 0:
        return f"detect failed ({done.returncode}): {done.stderr.decode().strip()}"
    return json.loads(done.stdout)


def natdiscovery_argv(host: Host, observer: str) -> list[str]:
    """``turnutils_natdiscovery -m -f`` from ``host`` to ``observer``; bound to the host's own
    address (``-L``), so that it can tell a missing NAT (it compares local and reflexive)."""
    ip, port = observer.rsplit(":", 1)
    return ["turnutils_natdiscovery", "-m", "-f", "-L", host.ip, "-p", port, ip]


async def run_natdiscovery(host: Host, observer: str) -> dict[str, object]:
    """natdiscovery's verdict from ``host`` (see :func:`parse_natdiscovery`)."""
    with trio.fail_after(NATDISCOVERY_TIMEOUT_S):
        done = await host.run(natdiscovery_argv(host, observer), check=False)
    return parse_natdiscovery(done.stdout.decode(errors="replace"))


_BEHAVIOUR = {
    "Endpoint Independent": "ei",
    "Address Dependent": "hd",
    "Address and Port Dependent": "pd",
}
_VERDICT = re.compile(r"NAT with (Endpoint Independent|Address(?: and Port)? Dependent) (\w+)!")


def parse_natdiscovery(output: str) -> dict[str, object]:
    """``{"nat", "mapping", "filtering"}`` from ``turnutils_natdiscovery -m -f`` output.

    It prints "NAT with Endpoint Independent Mapping!" (or Address / Address and Port
    Dependent), the same for Filtering, and "No NAT! (Endpoint Independent Mapping)" in the
    mapping part when the reflexive address is its local one. A missing or contradictory verdict
    is kept as a descriptive string, so that a comparison fails and shows it.
    """
    mapping_part, _, filtering_part = output.partition("-= Filtering Behavior Discovery =-")
    verdicts: dict[str, set[str]] = {"Mapping": set(), "Filtering": set()}
    for part, kind in ((mapping_part, "Mapping"), (filtering_part, "Filtering")):
        for behaviour, said in _VERDICT.findall(part):
            if said == kind:
                verdicts[kind].add(_BEHAVIOUR[behaviour])

    def one(kind: str) -> str:
        found = verdicts[kind]
        return next(iter(found)) if len(found) == 1 else f"no single {kind} verdict: {output!r}"

    return {
        "nat": "No NAT!" not in mapping_part,
        "mapping": one("Mapping"),
        "filtering": one("Filtering"),
    }


def detector_verdict(profile: Any) -> dict[str, object] | str:
    """What the tests compare of a profile: the classification and the public address."""
    if not isinstance(profile, dict):
        return str(profile)
    return {
        "nat": profile["nat_present"],
        "mapping": profile["mapping"],
        "filtering": profile["filtering"],
        "allocation": profile["allocation"],
        "port_delta": profile["port_delta"],
        "public_ip": profile["public_ip"],
        "port_preserved": profile["public_port"] == profile["local_address"][1],
        "confidence": profile["confidence"],
    }


def expected_verdict(host: Host) -> dict[str, object]:
    """:func:`detector_verdict` of a correct profile for ``host``."""
    expected = host.preset.expected
    return {
        "nat": expected.nat,
        "mapping": str(expected.mapping),
        "filtering": str(expected.filtering),
        "allocation": str(expected.allocation),
        "port_delta": SEQUENTIAL_DELTA.get(host.preset),
        "public_ip": host.public_ip,
        "port_preserved": expected.allocation == "pp",
        "confidence": "high",
    }


def natdiscovery_expected(host: Host) -> dict[str, object]:
    """:func:`parse_natdiscovery` of a correct verdict for ``host``."""
    expected = host.preset.expected
    return {
        "nat": expected.nat,
        "mapping": str(expected.mapping),
        "filtering": str(expected.filtering),
    }


async def on_every_host(hosts: Sequence[Host], run: Callable[[Host], Awaitable[T]]) -> dict[str, T]:
    """``run(host)`` for every host at once; results by preset name."""
    results: dict[str, T] = {}

    async def one(host: Host) -> None:
        results[host.preset.value] = await run(host)

    async with trio.open_nursery() as nursery:
        for host in hosts:
            nursery.start_soon(one, host)
    return results


async def detect_everywhere(lab: Lab, observer: str) -> dict[str, object]:
    async def verdict(host: Host) -> object:
        return detector_verdict(await run_detector(host, observer))

    return await on_every_host(lab.hosts, verdict)


def expected_everywhere(lab: Lab) -> dict[str, object]:
    return {host.preset.value: expected_verdict(host) for host in lab.hosts}
