"""RFC 6298's round-trip estimate."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from macula_nat.net.rtt import RttEstimate

rtts = st.floats(min_value=0.0, max_value=10.0, allow_nan=False)


def estimate_of(samples: list[float]) -> RttEstimate:
    estimate = RttEstimate.first(samples[0])
    for sample in samples[1:]:
        estimate = estimate.updated(sample)
    return estimate


def test_the_first_sample_sets_srtt_and_half_of_it_as_variation() -> None:
    estimate = RttEstimate.first(0.1)
    assert (estimate.srtt, estimate.rttvar, estimate.samples) == (0.1, 0.05, 1)
    assert estimate.rto() == pytest.approx(0.3)  # 0.1 + 4 x 0.05: three round trips


def test_a_first_sample_may_start_from_a_known_variation() -> None:
    """A caller that measured other paths (the DHT's routing table) starts a new one at the
    variation it saw there instead of half the first round trip."""
    estimate = RttEstimate.first(0.2, rttvar=0.004)
    assert (estimate.srtt, estimate.rttvar, estimate.samples) == (0.2, 0.004, 1)
    assert estimate.rto() == pytest.approx(0.216)
    with pytest.raises(ValueError):
        RttEstimate.first(0.2, rttvar=-0.001)


@given(st.floats(0.001, 10.0), st.integers(1, 50))
def test_steady_round_trips_converge_to_them(sample: float, count: int) -> None:
    estimate = estimate_of([sample] * count)
    assert estimate.samples == count
    assert estimate.srtt == pytest.approx(sample)
    assert sample <= estimate.rto() <= 3 * sample + 0.001


@given(st.lists(rtts, min_size=1, max_size=40))
def test_the_smoothed_rtt_stays_among_the_samples(samples: list[float]) -> None:
    estimate = estimate_of(samples)
    assert min(samples) - 1e-9 <= estimate.srtt <= max(samples) + 1e-9
    assert estimate.rto() >= estimate.srtt


@given(st.lists(rtts, min_size=1, max_size=30), st.floats(0.0, 1.0), st.floats(1.0, 5.0))
def test_the_timeout_stays_within_its_bounds(
    samples: list[float], floor: float, ceiling: float
) -> None:
    assert floor <= estimate_of(samples).rto(floor=floor, ceiling=ceiling) <= ceiling


@pytest.mark.parametrize("bad", [-0.001, float("nan")])
def test_negative_or_undefined_round_trips_are_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="round-trip time"):
        RttEstimate.first(bad)
    with pytest.raises(ValueError, match="round-trip time"):
        RttEstimate.first(0.02).updated(bad)


def test_crossed_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="floor"):
        RttEstimate.first(0.02).rto(floor=2.0, ceiling=1.0)
