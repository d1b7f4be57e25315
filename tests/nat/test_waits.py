"""The waits of detection tests, derived from the RFC 6298 estimate."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from macula_nat.nat.waits import (
    MIN_RTO,
    MIN_SUB_PATH_WAIT,
    SILENCE_TRANSMISSIONS,
    rto,
    silence_policy,
    sub_path_policy,
)
from macula_nat.net.rtt import RttEstimate

rtts = st.floats(min_value=0.0, max_value=10.0, allow_nan=False)


def estimate_of(samples: list[float]) -> RttEstimate:
    estimate = RttEstimate.first(samples[0])
    for sample in samples[1:]:
        estimate = estimate.updated(sample)
    return estimate


def test_one_sample_gives_three_round_trips_as_rfc_6298_says() -> None:
    estimate = RttEstimate.first(0.02)
    assert (estimate.srtt, estimate.rttvar, estimate.samples) == (0.02, 0.01, 1)
    assert rto(estimate) == pytest.approx(0.06)


def test_a_near_observer_still_gets_the_minimum_rto() -> None:
    assert rto(RttEstimate.first(0.0002)) == MIN_RTO


def test_a_steady_path_narrows_the_rto_toward_the_rtt() -> None:
    estimate = estimate_of([0.05] * 12)
    assert estimate.samples == 12
    assert estimate.srtt == pytest.approx(0.05)
    assert 0.05 < rto(estimate) < 0.06 < rto(RttEstimate.first(0.05))


def test_the_silence_wait_at_20_ms_is_a_few_rtos() -> None:
    policy = silence_policy(RttEstimate.first(0.02))
    assert policy.transmission_offsets() == pytest.approx((0.0, 0.06, 0.12, 0.18, 0.24))
    assert policy.give_up_offset() == pytest.approx(0.3)


@given(st.lists(rtts, min_size=1, max_size=40))
def test_the_rto_covers_the_smoothed_rtt_and_the_minimum(samples: list[float]) -> None:
    estimate = estimate_of(samples)
    assert estimate.samples == len(samples)
    assert min(samples) - 1e-9 <= estimate.srtt <= max(samples) + 1e-9
    assert rto(estimate) >= max(MIN_RTO, estimate.srtt)


@given(st.lists(rtts, min_size=1, max_size=40))
def test_a_silent_test_gets_every_transmission_an_rto_and_nothing_more(
    samples: list[float],
) -> None:
    estimate = estimate_of(samples)
    policy = silence_policy(estimate)
    offsets = policy.transmission_offsets()
    assert len(offsets) == SILENCE_TRANSMISSIONS
    gaps = [later - earlier for earlier, later in itertools.pairwise(offsets)]
    assert gaps == pytest.approx([rto(estimate)] * (SILENCE_TRANSMISSIONS - 1))
    assert policy.give_up_offset() == pytest.approx(SILENCE_TRANSMISSIONS * rto(estimate))


@given(rtts, st.lists(rtts, min_size=1, max_size=10))
def test_the_first_sample_alone_never_waits_less_than_three_rtts(
    first: float, later: list[float]
) -> None:
    assert rto(RttEstimate.first(first)) >= 3 * first - 1e-12
    assert rto(estimate_of([first, *later])) > 0


@given(st.lists(rtts, min_size=1, max_size=40), st.integers(min_value=1, max_value=8))
def test_a_sub_path_is_given_one_smoothed_round_trip(samples: list[float], count: int) -> None:
    estimate = estimate_of(samples)
    policy = sub_path_policy(estimate, count)
    wait = max(MIN_SUB_PATH_WAIT, estimate.srtt)
    offsets = policy.transmission_offsets()
    assert len(offsets) == count
    assert offsets[-1] < wait
    assert policy.give_up_offset() == pytest.approx(wait)
    assert wait <= rto(estimate) or wait == MIN_SUB_PATH_WAIT


def test_a_sub_path_needs_a_transmission() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        sub_path_policy(RttEstimate.first(0.02), 0)
