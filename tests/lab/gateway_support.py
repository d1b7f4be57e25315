"""Driving the gateway lab test's processes (``tests/lab/lab_node.py``) inside the lab.

Every process writes its log (stderr) to a file under the test's ``tmp_path`` (shown when a step
fails) and, for our script, JSON lines on stdout that :class:`LabProcess` reads one event at a
time; instructions go to its stdin, one line each. The lab stops every process at teardown.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

from tests.nat_lab import Node

SERVER_PORTS = (3478, 3479)
"""The observer's ports on the primary and alternate IP (relay and DHT follow: 3480, 3481)."""
"""A plain public DHT node on the alternate IP: somewhere for the gateway's announcement."""
READY_TIMEOUT_S = 15.0
STEP_TIMEOUT_S = 40.0
"""Bound on one step of a node (each of its own network waits is bounded at 30 s)."""


class LabProcess:
    """A process started in a lab namespace, with its stdout read as JSON lines."""

    def __init__(self, name: str, process: trio.Process, log: Path) -> None:
        self.name = name
        self.process = process
        self.log = log
        self._buffer = b""

    def describe(self) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"{self.name} (exit {self.process.returncode}); its log:\n{text[-4000:]}"

    async def event(self, expected: str, timeout: float = STEP_TIMEOUT_S) -> dict[str, Any]:
        """The next JSON line whose ``event`` is ``expected`` (others are skipped)."""
        assert self.process.stdout is not None
        with trio.move_on_after(timeout):
            while True:
                line, newline, rest = self._buffer.partition(b"\n")
                if newline:
                    self._buffer = rest
                    try:
                        found = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(found, dict) and found.get("event") == expected:
                        return found
                    continue
                chunk = await self.process.stdout.receive_some(65536)
                if not chunk:
                    raise AssertionError(f"no {expected!r} before EOF from {self.describe()}")
                self._buffer += chunk
        raise AssertionError(f"no {expected!r} within {timeout} s from {self.describe()}")

    async def tell(self, line: str) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(line.encode() + b"\n")


async def start_script(node: Node, name: str, args: list[str], logs: Path) -> LabProcess:
    """``python -m tests.lab.lab_node *args`` in ``node``'s namespace."""
    log = logs / f"{name}.log"
    with log.open("wb") as err:
        process = await node.start_python(
            ["-m", "tests.lab.lab_node", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err.fileno(),
        )
    return LabProcess(name, process, log)


async def wait_for_log(process: trio.Process, log: Path, text: str, timeout: float) -> None:
    """Return once ``text`` appears in ``log``; fail if the process ends first or in time."""
    path = trio.Path(log)
    with trio.move_on_after(timeout):
        while text not in await path.read_text(errors="replace"):
            if process.poll() is not None:
                break
            await trio.sleep(0.05)
        else:
            return
    content = await path.read_text(errors="replace")
    raise AssertionError(f"no {text!r} in the log (exit {process.returncode}):\n{content}")


async def start_cli_gateway(
    server: Node, primary: str, alternate: str, logs: Path, extra: Sequence[str] = ()
) -> None:
    """``macula-nat gateway`` itself: observer on ``primary``/``alternate`` (RFC 5780), relay
    and DHT on the primary IP's next ports: a lone gateway, its DHT node the only public one.
    ``extra``: more of its options (``--relay-tcp``)."""
    log = logs / "gateway.log"
    argv = [
        "-m", "macula_nat", "gateway",
        "--listen", f"{primary}:{SERVER_PORTS[0]}",
        "--alt", f"{alternate}:{SERVER_PORTS[1]}",
        *extra,
    ]  # fmt: skip
    with log.open("wb") as err:
        process = await server.start_python(argv, stderr=err.fileno())
    await wait_for_log(process, log, "macula_nat.gateway: gateway", READY_TIMEOUT_S)


async def start_limited_gateway(
    server: Node, primary: str, alternate: str, bandwidth_limit: float, logs: Path
) -> dict[str, Any]:
    """A gateway as :func:`start_cli_gateway` but with a per-session ``bandwidth_limit`` (the
    command has no option for it); returns its ``ready`` event."""
    args = [
        "gateway",
        "--listen", f"{primary}:{SERVER_PORTS[0]}",
        "--alt", f"{alternate}:{SERVER_PORTS[1]}",
        "--bandwidth-limit", str(bandwidth_limit),
    ]  # fmt: skip
    gateway = await start_script(server, "gateway", args, logs)
    return await gateway.event("ready", READY_TIMEOUT_S)


def relay_address(primary: str) -> list[object]:
    return [primary, SERVER_PORTS[1] + 1]


def dht_address(primary: str) -> str:
    return f"{primary}:{SERVER_PORTS[1] + 2}"
