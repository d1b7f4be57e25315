"""`make run`'s demonstration: every NAT type connects to every other as the strategy says."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import attrs
import pytest
import trio
from trio.testing import MockClock

from macula_nat import cli
from macula_nat.connection.link import ConnectionMethod
from macula_nat.demo import nat as nat_demo
from macula_nat.demo import runtime as runtime_demo
from macula_nat.nat.profile import NatProfile
from macula_nat.net.sim import Preset
from macula_nat.traversal.strategy import Method, Side, choose

PROFILE = NatProfile("ei", "ei", "pp", "203.0.113.1", 4000, 0.0, "high")


async def test_every_pair_chats_and_ends_as_the_strategy_says(autojump_clock: MockClock) -> None:
    lines: list[str] = []
    result = await nat_demo.run(lines.append)

    header = next(i for i, line in enumerate(lines) if line.startswith("from "))
    table = lines[header + 1 : lines.index("", header)]
    assert len(table) == len(result.rows) == 28
    assert lines[-2] == (
        f"28 pairs: {sum(r.method is ConnectionMethod.DIRECT for r in result.rows)} direct, "
        f"{sum(r.method is ConnectionMethod.PUNCHED for r in result.rows)} punched, "
        f"{sum(r.method is ConnectionMethod.RELAYED for r in result.rows)} relayed"
    )
    assert lines[-1].startswith(f"weighted direct share {result.weighted_direct_share:.1%} ")
    pairs = [(row.local, row.remote) for row in result.rows]
    assert pairs == list(itertools.combinations(nat_demo.NAT_TYPES, 2))
    for row, line in zip(result.rows, table, strict=True):
        local, remote = nat_demo.node_name(row.local), nat_demo.node_name(row.remote)
        assert line.split()[:3] == [local, remote, str(row.method)]
        assert row.heard == (f"hello from {local}", f"hello from {remote}")
        assert f"{local:<20}  {row.local_profile.nat_type:<20}  " in "\n".join(lines)
        plan = choose(row.local_profile, row.remote_profile)
        if plan.method is Method.RELAY:
            assert row.method is ConnectionMethod.RELAYED, plan.reason
        if plan.method is Method.DIRECT and plan.initiator in (None, Side.LOCAL):
            assert row.method is ConnectionMethod.DIRECT, plan.reason
        assert (row.direct_after is None) == (row.method is ConnectionMethod.RELAYED)
        assert row.first_byte <= 0.3  # simulated: 20 ms between nodes, 40 ms via the relay
    assert result.weighted_direct_share >= 0.95


def test_the_direct_share_is_weighted_by_how_common_each_nat_type_is() -> None:
    def row(local: Preset, remote: Preset, method: ConnectionMethod) -> nat_demo.PairResult:
        return nat_demo.PairResult(
            local, remote, PROFILE, PROFILE, method, 0.1, None, 0, ("hello", "hello")
        )

    relayed = row(Preset.FULL_CONE, Preset.RESTRICTED_CONE, ConnectionMethod.RELAYED)
    rows = [
        row(a, b, ConnectionMethod.PUNCHED)
        for a, b in itertools.combinations(nat_demo.NAT_TYPES, 2)
        if {a, b} != {Preset.FULL_CONE, Preset.RESTRICTED_CONE}
    ]
    shares = nat_demo.SHARES
    total = sum(2 * shares[a] * shares[b] for a, b in itertools.combinations(shares, 2))
    expected = 1 - 2 * 0.15 * 0.37 / total
    assert nat_demo.weighted_direct_share([*rows, relayed]) == pytest.approx(expected)
    assert nat_demo.weighted_direct_share(rows) == 1.0
    assert (
        nat_demo.weighted_direct_share([attrs.evolve(relayed, local=Preset.OPEN_INTERNET)]) == 0.0
    )


@pytest.mark.parametrize(
    ("argv", "demo"),
    [(["-v", "demo"], nat_demo.run), (["-v", "demo", "--runtime"], runtime_demo.run)],
    ids=["nat", "runtime"],
)
def test_the_cli_runs_the_nat_demo_unless_asked_for_the_runtime_one(
    argv: list[str], demo: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Callable[..., Any], dict[str, Any]]] = []
    monkeypatch.setattr(trio, "run", lambda fn, *args, **kwargs: calls.append((fn, kwargs)))
    args = cli.build_parser().parse_args(argv)
    assert args.handler(args) == 0
    [(called, kwargs)] = calls
    assert called is demo
    if demo is nat_demo.run:
        clock = kwargs["clock"]
        assert isinstance(clock, MockClock) and clock.autojump_threshold == 0
