"""`make run`'s demonstration: every pair of NAT types, the same type included, connects as the
strategy says, and the headline weighs every pair it ran."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

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
    assert len(table) == len(result.rows) == 36  # 8 types: 28 pairs of two, 8 of one with itself
    assert lines[-2] == (
        f"36 pairs: {sum(r.method is ConnectionMethod.DIRECT for r in result.rows)} direct, "
        f"{sum(r.method is ConnectionMethod.PUNCHED for r in result.rows)} punched, "
        f"{sum(r.method is ConnectionMethod.RELAYED for r in result.rows)} relayed"
    )
    assert lines[-1].startswith(
        f"weighted direct share {result.weighted_direct_share:.1%} over all 36 pairs "
    )
    assert result.weighted_direct_share == nat_demo.weighted_direct_share(result.rows)
    pairs = [(row.local, row.remote) for row in result.rows]
    assert pairs == list(itertools.combinations_with_replacement(nat_demo.NAT_TYPES, 2))
    assert set(nat_demo.SHARES) == set(nat_demo.NAT_TYPES)
    for row, line in zip(result.rows, table, strict=True):
        local = nat_demo.node_name(row.local)
        remote = nat_demo.node_name(row.remote, twin=row.local == row.remote)
        assert line.split()[:3] == [local, remote, str(row.method)]
        assert row.heard == (f"hello from {local}", f"hello from {remote}")
        assert f"{local:<22}  {row.local_profile.nat_type:<20}  " in "\n".join(lines)
        assert f"{remote:<22}  {row.remote_profile.nat_type:<20}  " in "\n".join(lines)
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

    every_pair = list(itertools.combinations_with_replacement(nat_demo.NAT_TYPES, 2))
    shares = nat_demo.SHARES
    total = sum(shares.values()) ** 2  # every ordered pair of types, each weighing a * b

    def share_with_relayed(a: Preset, b: Preset) -> float:
        relayed, punched = ConnectionMethod.RELAYED, ConnectionMethod.PUNCHED
        rows = [row(x, y, relayed if (x, y) == (a, b) else punched) for x, y in every_pair]
        return nat_demo.weighted_direct_share(rows)

    # A pair of two types stands for both orders; a same-type pair for one.
    assert share_with_relayed(Preset.FULL_CONE, Preset.RESTRICTED_CONE) == pytest.approx(
        1 - 2 * 0.15 * 0.37 / total
    )
    assert share_with_relayed(Preset.SYMMETRIC_RANDOM, Preset.SYMMETRIC_RANDOM) == pytest.approx(
        1 - 0.08 * 0.08 / total
    )
    assert (
        nat_demo.weighted_direct_share([row(a, b, ConnectionMethod.PUNCHED) for a, b in every_pair])
        == 1.0
    )
    assert nat_demo.weighted_direct_share([]) == 0.0
    # A type without a share is refused, not left out of the headline.
    unweighted = {p: w for p, w in shares.items() if p is not Preset.OPEN_INTERNET}
    with pytest.raises(ValueError, match="no share for open-internet"):
        nat_demo.weighted_direct_share([row(Preset.OPEN_INTERNET, Preset.FULL_CONE,
                                            ConnectionMethod.DIRECT)], unweighted)  # fmt: skip


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
