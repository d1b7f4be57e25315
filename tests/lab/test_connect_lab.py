"""The NAT pair matrix on real NATs: ``macula-nat listen`` on one site, ``macula-nat connect`` on
another, for every ordered pair of a representative set of presets.

One lab holds two sites per preset (listeners on the first, connectors on the second, so a pair
of equal presets still crosses two NATs with different public IPs) and the gateway
(``start_cli_gateway``: observer, relay and DHT on 203.0.113.100). Every access link delays each
direction by 5 ms, so two sites are 4 x 5 = 20 ms apart (round trip) and the gateway 10 ms.

The pairs run in rounds of a Latin square: round k pairs listener preset i with connector preset
i + k, so a round uses each site once, its pairs run concurrently and none shares a NAT (or its
mapping state) with another; the routers forget their mappings between rounds. For each pair
the test starts the listener, then (once it waits for connections) the connector, and records
from the connector's output:

- first byte: from the start of the connect (its ``home relay`` line, printed just before it
  calls ``connect``) until the reply to its first message is back: the connector sends
  ``ping``, the listener prints it, the test has the listener answer ``pong`` (the test's own
  turnaround through two pipes is included);
- direct: from the same start until the connection is ``direct`` or ``punched``;
- record: how long the connector's lookup of the listener's record (over the DHT) took, from
  its log: the part of the above before the profiles are known;
- method: the last method it printed within a bounded wait (a pair the strategy expects to go
  direct is watched up to ``METHOD_WAIT_S``; one expected to stay relayed briefly).

It then exchanges a second message both ways on that final path, ends the connector's input (it
closes the connection and exits 0) and stops the listener.

Expectations come from :func:`macula_nat.traversal.strategy.choose` over the presets'
classifications (the profiles detection finds, which the lab's detection tests check; the NAT
type each node prints is checked against them here too).
"""

from __future__ import annotations

import re
from pathlib import Path

import attrs
import pytest
import trio

from macula_nat.traversal.strategy import Method
from tests.lab.connect_support import (
    NAT_LINE,
    NODE_LINE,
    ChatNode,
    Expectation,
    expect,
    gateway_arguments,
    start_chat_node,
)
from tests.lab.gateway_support import start_cli_gateway
from tests.nat_lab import Host, Lab, NatPreset, SiteConfig, open_lab

pytestmark = pytest.mark.lab

PRESETS = [
    NatPreset.NONE,
    NatPreset.FULL_CONE,
    NatPreset.RESTRICTED_CONE,
    NatPreset.PORT_RESTRICTED_CONE,
    NatPreset.SYMMETRIC,
    NatPreset.SYMMETRIC_SEQUENTIAL,
]
CARRIER_PRESETS = [
    NatPreset.CGNAT,
    NatPreset.CGNAT_FULL_CONE,
    NatPreset.PORT_RESTRICTED_CONE,
    NatPreset.SYMMETRIC,
]
DELAY_MS = 5.0
"""One way, per access link and direction: 20 ms round trip between two sites."""
READY_TIMEOUT_S = 30.0
"""A node's start: python, NAT detection (5 s when a filter leaves a test unanswered), DHT,
home relay; ten nodes start at once on two cores."""
CONNECT_TIMEOUT_S = 20.0
"""From the start of the connect to the first reply (the connector gives up after 15 s)."""
METHOD_WAIT_S = 15.0
"""From the start of the connect: the longest a pair expected to go direct is watched (three
punch attempts take about 9 s: signalling, a 2 s probe window, a 0.5 s gap each)."""
RELAY_SETTLE_S = 2.0
"""After the first reply: how long a pair expected to stay relayed is watched."""
RESOLVED_LOG = re.compile(r"record of [0-9a-f]{16} resolved in (\d+) ms")
"""The coordinator's log line (INFO; the nodes run with ``-v``) timing the record lookup."""
MESSAGE_TIMEOUT_S = 5.0
EXIT_TIMEOUT_S = 10.0
PAIR_TIMEOUT_S = 120.0
TEST_TIMEOUT_S = 230.0
FIRST_BYTE_BOUND_MS = 5000.0
DIRECT_BOUND_MS = 10000.0

DIRECT_LINE = re.compile(
    r"(?:connected to \S+ \((?:direct|punched)\)|\[\S+: now (?:direct|punched)\])$"
)
SHORT = {
    NatPreset.NONE: "none",
    NatPreset.FULL_CONE: "full",
    NatPreset.RESTRICTED_CONE: "restr",
    NatPreset.PORT_RESTRICTED_CONE: "port-r",
    NatPreset.SYMMETRIC: "sym",
    NatPreset.EIM_RANDOM_PORT: "eim-rd",
    NatPreset.ADDRESS_DEPENDENT: "addr-d",
    NatPreset.SYMMETRIC_SEQUENTIAL: "sym-seq",
    NatPreset.CGNAT: "cgnat",
    NatPreset.CGNAT_FULL_CONE: "cgnat+full",
}


@attrs.define
class PairResult:
    listener: NatPreset
    connector: NatPreset
    expected: Expectation
    methods: list[str] = attrs.Factory(list)
    """Every method the connector printed, in order."""
    first_byte_ms: float | None = None
    direct_ms: float | None = None
    resolve_ms: float | None = None
    """How long the connector's lookup of the listener's record took (from its log)."""
    ready_s: float | None = None
    """Connector process start until its connect began (python, detection, DHT, home relay)."""
    detected: tuple[str, str] | None = None
    """The NAT types the listener and the connector printed."""
    exit_status: int | None = None
    failure: str | None = None

    @property
    def name(self) -> str:
        return f"{SHORT[self.listener]} <- {SHORT[self.connector]}"

    @property
    def method(self) -> str | None:
        return self.methods[-1] if self.methods else None

    def problems(self) -> list[str]:
        found = []
        if self.failure is not None:
            found.append(self.failure)
        elif self.exit_status != 0:
            found.append(f"the connector exited with {self.exit_status}")
        expected = self.expected
        if self.detected is not None and self.detected != (
            expected.listener_type,
            expected.connector_type,
        ):
            found.append(
                f"detected {self.detected}, the presets give "
                f"{(expected.listener_type, expected.connector_type)}"
            )
        if expected.plan.method is Method.RELAY:
            if self.method != "relayed":
                found.append(f"ended {self.method}, the strategy says relay")
        elif self.method not in ("direct", "punched"):
            found.append(f"ended {self.method}, the strategy says {expected.method}")
        if self.first_byte_ms is not None and self.first_byte_ms > FIRST_BYTE_BOUND_MS:
            found.append(f"first byte after {self.first_byte_ms:.0f} ms")
        if self.direct_ms is not None and self.direct_ms > DIRECT_BOUND_MS:
            found.append(f"direct after {self.direct_ms:.0f} ms")
        return [f"{self.name}: {problem}" for problem in found]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def format_table(results: list[PairResult], wall_s: float) -> str:
    header = (
        f"{'listener <- connector':<22} {'expected':<9} {'method':<9} {'first byte ms':>13} "
        f"{'direct ms':>9} {'record ms':>9} {'ready s':>7}  path / plan"
    )
    lines = [
        f"NAT pair matrix: {len(results)} pairs, {DELAY_MS * 4:g} ms RTT between sites, "
        f"{wall_s:.1f} s wall",
        header,
        "-" * len(header),
    ]
    for r in results:
        ready = "-" if r.ready_s is None else f"{r.ready_s:.1f}"
        path = " > ".join(r.methods) or "no connection"
        status = "  FAILED" if r.problems() else ""
        lines.append(
            f"{r.name:<22} {r.expected.method:<9} {r.method or '-':<9} "
            f"{_ms(r.first_byte_ms):>13} {_ms(r.direct_ms):>9} {_ms(r.resolve_ms):>9} {ready:>7}  "
            f"{path} / {r.expected.plan.reason}{status}"
        )
    for r in results:
        for problem in r.problems():
            lines.append(f"FAILED {problem.splitlines()[0]}")
    return "\n".join(lines) + "\n"


async def run_pair(lab: Lab, listener_host: Host, connector_host: Host, logs: Path) -> PairResult:
    """One pair, start to end; a failure is recorded in the result (with the nodes' output)."""
    result = PairResult(
        listener_host.preset, connector_host.preset, expect(listener_host, connector_host)
    )
    nodes: list[ChatNode] = []
    async with trio.open_nursery() as nursery:
        try:
            with trio.fail_after(PAIR_TIMEOUT_S):
                await _drive(result, lab, listener_host, connector_host, logs, nursery, nodes)
        except* (AssertionError, trio.TooSlowError) as group:
            result.failure = "\n".join(
                str(exc) or f"{type(exc).__name__} after {PAIR_TIMEOUT_S} s"
                for exc in _leaves(group)
            )
        finally:
            with trio.CancelScope(shield=True):
                for node in reversed(nodes):
                    await node.stop()
            if len(nodes) > 1:
                result.methods = [method for _, method in nodes[1].methods()]
            nursery.cancel_scope.cancel()
    return result


async def _drive(
    result: PairResult,
    lab: Lab,
    listener_host: Host,
    connector_host: Host,
    logs: Path,
    nursery: trio.Nursery,
    nodes: list[ChatNode],
) -> None:
    tag = f"{listener_host.preset.value}--{connector_host.preset.value}"
    gateway = gateway_arguments(lab.server.primary_ip)
    listener = await start_chat_node(
        listener_host, f"{tag}.listener", ["listen", *gateway], logs, nursery
    )
    nodes.append(listener)
    await listener.wait_for("waiting for connections$", READY_TIMEOUT_S)
    listener_id = listener.find(NODE_LINE)
    listener_nat = listener.find(NAT_LINE)
    assert listener_id is not None and listener_nat is not None, listener.describe()
    listener_short = listener_id[1].group(1)[:16]

    connector = await start_chat_node(
        connector_host,
        f"{tag}.connector",
        ["connect", listener_id[1].group(1), *gateway],
        logs,
        nursery,
    )
    nodes.append(connector)
    await connector.say("ping")  # waits in the pipe until the connection is there
    started, _ = await connector.wait_for("home relay ", READY_TIMEOUT_S)
    result.ready_s = started - connector.started
    connector_id = connector.find(NODE_LINE)
    connector_nat = connector.find(NAT_LINE)
    assert connector_id is not None and connector_nat is not None, connector.describe()
    connector_short = connector_id[1].group(1)[:16]
    result.detected = (listener_nat[1].group(1), connector_nat[1].group(1))

    # the first message and its reply
    failed = re.compile("could not connect")
    async with trio.open_nursery() as watch:

        async def fail_fast() -> None:
            with trio.move_on_after(CONNECT_TIMEOUT_S + 1):
                await connector.wait_for(failed, CONNECT_TIMEOUT_S + 2)
                raise AssertionError(f"the connector gave up: {connector.describe()}")

        watch.start_soon(fail_fast)
        await listener.wait_for(f"{connector_short}> ping$", CONNECT_TIMEOUT_S)
        await listener.say("pong")
        echoed, _ = await connector.wait_for(f"{listener_short}> pong$", CONNECT_TIMEOUT_S)
        watch.cancel_scope.cancel()
    result.first_byte_ms = (echoed - started) * 1000

    # the method it settles on
    if result.expected.plan.method is Method.RELAY:
        deadline = echoed + RELAY_SETTLE_S
    else:
        deadline = started + METHOD_WAIT_S
    try:
        direct, _ = await connector.wait_for(DIRECT_LINE, max(0.0, deadline - trio.current_time()))
    except AssertionError:
        pass  # stayed relayed: the method check reports it
    else:
        result.direct_ms = (direct - started) * 1000

    # a message both ways on the final path, then the connector leaves
    await connector.say("ping 2")
    await listener.wait_for(f"{connector_short}> ping 2$", MESSAGE_TIMEOUT_S)
    await listener.say("pong 2")
    await connector.wait_for(f"{listener_short}> pong 2$", MESSAGE_TIMEOUT_S)
    await connector.end_input()
    result.exit_status = await connector.wait_exit(EXIT_TIMEOUT_S)
    assert result.exit_status == 0, connector.describe()
    resolved = RESOLVED_LOG.search(connector.log.read_text(errors="replace"))
    if resolved is not None:
        result.resolve_ms = float(resolved.group(1))


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        found.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found


def rounds(count: int) -> list[list[tuple[int, int]]]:
    """A Latin square: round k pairs listener site i with connector preset i + k."""
    return [[(i, (i + k) % count) for i in range(count)] for k in range(count)]


async def test_every_pair_of_presets_connects_and_chats(tmp_path: Path) -> None:
    await run_matrix(PRESETS, tmp_path)


async def test_carrier_nats_connect_to_each_other_and_to_home_nats(tmp_path: Path) -> None:
    """A phone on a carrier's NAT and a home router behind one (double NAT), both ways, with
    each other and with the commonest and the hardest home NATs."""
    await run_matrix(CARRIER_PRESETS, tmp_path)


async def run_matrix(presets: list[NatPreset], tmp_path: Path) -> None:
    """Every (listener, connector) pair of ``presets``, a Latin square's round at a time."""
    count = len(presets)
    sites = [SiteConfig(p) for p in presets] * 2  # listener sites, then connector sites
    results: list[PairResult] = []
    begin = trio.current_time()
    try:
        with trio.fail_after(TEST_TIMEOUT_S):
            async with open_lab(sites, delay_ms=DELAY_MS) as lab:
                assert lab.impairment is not None
                server = lab.server
                await start_cli_gateway(server, server.primary_ip, server.alternate_ip, tmp_path)
                for number, pairs in enumerate(rounds(count)):
                    if number:
                        await lab.reset_nat_state()
                    found: dict[int, PairResult] = {}

                    async def one(
                        i: int, j: int, lab: Lab = lab, found: dict[int, PairResult] = found
                    ) -> None:
                        listener = lab.sites[i].host
                        connector = lab.sites[count + j].host
                        found[i] = await run_pair(lab, listener, connector, tmp_path)

                    async with trio.open_nursery() as nursery:
                        for i, j in pairs:
                            nursery.start_soon(one, i, j)
                    results.extend(found[i] for i, _ in pairs)
    finally:
        table = format_table(results, trio.current_time() - begin)
        print("\n" + table)
        (tmp_path / "connect_matrix.txt").write_text(table)
        print(f"(table and every node's log in {tmp_path})")

    problems = [problem for r in results for problem in r.problems()]
    assert len(results) == count * count
    assert not problems, "\n\n".join(problems)
