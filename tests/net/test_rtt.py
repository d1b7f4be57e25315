"""RFC 6298's round-trip estimator."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from macula_nat.net.rtt import RttEstimator


def test_before_any_sample_the_timeout_is_the_initial_one() -> None:
    assert RttEstimator(initial=1.0).timeout() == 1.0


def test_the_first_sample_sets_srtt_and_half_of_it_as_variation() -> None:
    rtt = RttEstimator()
    rtt.add(0.1)
    assert (rtt.srtt, rtt.rttvar) == (0.1, 0.05)
    assert rtt.timeout() == pytest.approx(0.3)  # 0.1 + 4 x 0.05


@given(st.floats(0.001, 10.0), st.integers(1, 50))
def test_steady_round_trips_converge_to_them(sample: float, count: int) -> None:
    rtt = RttEstimator(ceiling=100.0)
    for _ in range(count):
        rtt.add(sample)
    assert rtt.srtt == pytest.approx(sample)
    assert sample <= rtt.timeout() <= 3 * sample + rtt.granularity


@given(st.lists(st.floats(0.0, 100.0), max_size=30), st.floats(0.0, 1.0), st.floats(1.0, 5.0))
def test_the_timeout_stays_within_its_bounds(
    samples: list[float], floor: float, ceiling: float
) -> None:
    rtt = RttEstimator(floor=floor, ceiling=ceiling)
    for sample in samples:
        rtt.add(sample)
        assert floor <= rtt.timeout() <= ceiling


def test_nonsense_is_refused() -> None:
    with pytest.raises(ValueError):
        RttEstimator(floor=2.0, ceiling=1.0)
    with pytest.raises(ValueError):
        RttEstimator().add(-1.0)
