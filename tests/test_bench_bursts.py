"""The interleaving that the benchmarks' round-trip ratios rest on (``tests/bench/bursts.py``):
every driver runs its bursts in every round, neither always first, and a ratio is taken round by
round."""

from __future__ import annotations

import pytest

from tests.bench.bursts import WARM_UP, Bursts, RoundTrip, interleave


async def test_each_round_runs_every_driver_and_the_order_alternates() -> None:
    calls: list[str] = []

    def driver(name: str) -> RoundTrip:
        async def round_trip() -> None:
            calls.append(name)

        return round_trip

    bursts = await interleave({"a": driver("a"), "b": driver("b")}, rounds=3, burst=2)
    assert calls == ["a"] * WARM_UP + ["b"] * WARM_UP + list("aabbbbaaaabb")
    assert [len(bursts.seconds[name]) for name in "ab"] == [3, 3]


def test_the_ratio_is_taken_round_by_round() -> None:
    # the machine slows tenfold in round 2, where b happens to be 3x a; elsewhere 2x
    bursts = Bursts({"a": (1.0, 10.0, 1.0, 1.0, 1.0), "b": (2.0, 30.0, 2.0, 2.0, 2.0)})
    assert bursts.paired("b", "a") == pytest.approx((2.0, 2.0, 2.5))
    assert bursts.describe("a", "b") == "a/b 0.50x (quartiles 0.42-0.50)"
