"""Driving ``macula-nat listen`` / ``macula-nat connect`` inside the lab, for the connection tests.

Each node is the real command in a host's namespace: its stdout (the chat: ``node <id>``,
``NAT: ...``, ``connected to <peer> (relayed)``, ``[<peer>: now punched]``, ``<peer>> text``) is
read line by line into a timestamped transcript, its stdin takes the lines to send, its log
(stderr) goes to a file under the test's ``tmp_path``. The lab stops every process at teardown;
:meth:`ChatNode.stop` ends one earlier (by its own pid).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import attrs
import trio

from macula_nat.behavior import FilteringBehavior, MappingBehavior, PortAllocation
from macula_nat.nat.profile import Confidence, NatProfile
from macula_nat.traversal.strategy import Method, Plan, Side, choose
from tests.lab.gateway_support import SERVER_PORTS, dht_address
from tests.nat_lab import Host, NatPreset

NODE_LINE = re.compile(r"^node ([0-9a-f]{64})$")
NAT_LINE = re.compile(r"^NAT: (.+), public address (\S+)$")
METHOD_LINE = re.compile(r"^(?:connected to [0-9a-f]{16} \((\w+)\)|\[[0-9a-f]{16}: now (\w+)\])$")
SEQUENTIAL_DELTA = {NatPreset.SYMMETRIC_SEQUENTIAL: 1}
"""The port delta of the ``pc`` presets (see ``tests/nat_lab/README.md``)."""


def gateway_arguments(primary: str) -> list[str]:
    """``--observer`` and ``--bootstrap`` for the lab's lone gateway (``start_cli_gateway``)."""
    return ["--observer", f"{primary}:{SERVER_PORTS[0]}", "--bootstrap", dht_address(primary)]


class ChatNode:
    """A ``macula-nat listen``/``connect`` process and the transcript of its stdout."""

    def __init__(self, name: str, process: trio.Process, log: Path) -> None:
        self.name = name
        self.process = process
        self.log = log
        self.started = trio.current_time()
        self.lines: list[tuple[float, str]] = []
        """Each stdout line with the (trio) time it was read."""
        self.ended = False
        self._changed = trio.Event()

    def describe(self) -> str:
        transcript = "\n".join(f"  {t - self.started:7.3f} {line}" for t, line in self.lines)
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return (
            f"{self.name} (exit {self.process.returncode}); its output:\n{transcript}\n"
            f"its log:\n{text[-3000:]}"
        )

    async def read_output(self) -> None:
        """Read stdout into :attr:`lines` until it ends (run it in a nursery)."""
        assert self.process.stdout is not None
        buffer = b""
        try:
            while chunk := await self.process.stdout.receive_some(65536):
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                now = trio.current_time()
                for line in complete:
                    self.lines.append((now, line.decode(errors="replace")))
                self._wake()
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass
        finally:
            self.ended = True
            self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def find(self, pattern: re.Pattern[str], start: int = 0) -> tuple[int, re.Match[str]] | None:
        """The first line from index ``start`` that ``pattern`` matches, with its index."""
        for index in range(start, len(self.lines)):
            match = pattern.match(self.lines[index][1])
            if match is not None:
                return index, match
        return None

    async def wait_for(
        self, pattern: re.Pattern[str] | str, timeout: float, start: int = 0
    ) -> tuple[float, re.Match[str]]:
        """When the first line from ``start`` matching ``pattern`` (a regex, matched at the
        line's start) was read, and its match; AssertionError (with the transcript) after
        ``timeout`` or at the end of the output."""
        if isinstance(pattern, str):
            pattern = re.compile(pattern)
        with trio.move_on_after(timeout):
            while True:
                found = self.find(pattern, start)
                if found is not None:
                    index, match = found
                    return self.lines[index][0], match
                if self.ended:
                    raise AssertionError(
                        f"no line {pattern.pattern!r} before the end: {self.describe()}"
                    )
                await self._changed.wait()
        raise AssertionError(f"no line {pattern.pattern!r} within {timeout} s: {self.describe()}")

    def methods(self) -> list[tuple[float, str]]:
        """Every method the connection had (``connected to ... (m)``, ``[...: now m]``)."""
        found = []
        for t, line in self.lines:
            match = METHOD_LINE.match(line)
            if match is not None:
                found.append((t, match.group(1) or match.group(2)))
        return found

    async def say(self, line: str) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(line.encode() + b"\n")

    async def end_input(self) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.aclose()

    async def wait_exit(self, timeout: float) -> int | None:
        """The exit status, or None if the process is still running after ``timeout``."""
        with trio.move_on_after(timeout):
            await self.process.wait()
        return self.process.returncode

    async def stop(self, grace: float = 2.0) -> None:
        """End this process (SIGTERM, SIGKILL after ``grace``), bounded in time."""
        if self.process.returncode is None:
            self.process.terminate()
            if await self.wait_exit(grace) is None:
                self.process.kill()
                await self.wait_exit(5.0)


async def start_chat_node(
    host: Host, name: str, args: list[str], logs: Path, nursery: trio.Nursery
) -> ChatNode:
    """``python -m macula_nat -v *args`` in ``host``'s namespace, its stdout read in
    ``nursery``."""
    log = logs / f"{name}.log"
    with log.open("wb") as err:
        process = await host.start_python(
            ["-m", "macula_nat", "-v", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err.fileno(),
        )
    node = ChatNode(name, process, log)
    nursery.start_soon(node.read_output)
    return node


# -- what the strategy expects -------------------------------------------------------------------


def preset_profile(host: Host) -> NatProfile:
    """The profile detection gives ``host`` (its preset's classification, as the detection
    lab tests check), for :func:`~macula_nat.traversal.strategy.choose`."""
    expected = host.preset.expected
    return NatProfile(
        mapping=MappingBehavior(expected.mapping),
        filtering=FilteringBehavior(expected.filtering),
        allocation=PortAllocation(expected.allocation),
        public_ip=host.public_ip,
        public_port=40000,
        detected_at=0.0,
        confidence=Confidence.HIGH,
        nat_present=expected.nat,
        port_delta=SEQUENTIAL_DELTA.get(host.preset),
    )


def expected_method(plan: Plan) -> str:
    """The method a connector following ``plan`` ends with, in the connection's words.

    It dials only a DIRECT plan it may initiate; a DIRECT plan the peer must dial, and a PUNCH
    plan, start on the relay and punch in the background (``punched``); RELAY stays relayed.
    """
    if plan.method is Method.DIRECT and plan.initiator in (None, Side.LOCAL):
        return "direct"
    if plan.method in (Method.DIRECT, Method.PUNCH):
        return "punched"
    return "relayed"


@attrs.frozen
class Expectation:
    plan: Plan
    method: str
    listener_type: str
    connector_type: str


def expect(listener: Host, connector: Host) -> Expectation:
    """What ``connector`` reaching ``listener`` should do, from their presets' profiles."""
    local, remote = preset_profile(connector), preset_profile(listener)
    plan = choose(local, remote)
    return Expectation(plan, expected_method(plan), remote.nat_type, local.nat_type)
