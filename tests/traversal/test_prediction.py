"""Port prediction and birthday-probing plans, against the brief's numbers (section 7)."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from macula_nat.traversal.prediction import (
    PORT_MAX,
    PORT_MIN,
    PORT_SPACE,
    birthday_success,
    measured_delta,
    plan_birthday,
    predict_ports,
    probes_for,
    random_probe_ports,
)

ports = st.integers(min_value=PORT_MIN, max_value=PORT_MAX)
deltas = st.integers(min_value=-50, max_value=50).filter(bool)


def test_prediction_continues_at_the_delta_and_wraps() -> None:
    assert predict_ports([5000, 5001], 1, 3) == (5002, 5003, 5004)
    assert predict_ports([65534], 1, 3) == (65535, 1024, 1025)
    assert predict_ports([1025], -2, 2) == (65535, 65533)


@given(st.lists(ports, min_size=1, max_size=4), deltas, st.integers(min_value=0, max_value=50))
def test_predictions_stay_in_range_and_step_by_delta(
    observed: list[int], delta: int, count: int
) -> None:
    out = predict_ports(observed, delta, count)
    assert len(out) == count
    assert all(PORT_MIN <= p <= PORT_MAX for p in out)
    chain = [observed[-1], *out]
    assert all((b - a - delta) % PORT_SPACE == 0 for a, b in itertools.pairwise(chain))


@given(ports, deltas, st.integers(min_value=2, max_value=6))
def test_measured_delta_recovers_a_sequential_allocator(start: int, delta: int, n: int) -> None:
    observed = [start, *predict_ports([start], delta, n - 1)]
    assert measured_delta(observed) == delta


def test_measured_delta_rejects_irregular_or_too_few_ports() -> None:
    assert measured_delta([4000]) is None
    assert measured_delta([4000, 4001, 4005]) is None
    assert measured_delta([4000, 4000]) is None


def test_prediction_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        predict_ports([], 1, 1)
    with pytest.raises(ValueError):
        predict_ports([4000], 0, 1)
    with pytest.raises(ValueError):
        predict_ports([80], 1, 1)
    with pytest.raises(ValueError):
        predict_ports([4000], 1, -1)


@pytest.mark.parametrize(
    ("probes", "expected", "tolerance"),
    [(174, 0.50, 0.01), (1024, 0.98, 0.005), (2048, 0.9997, 0.0001)],
)
def test_the_briefs_birthday_numbers(probes: int, expected: float, tolerance: float) -> None:
    assert birthday_success(256, probes) == pytest.approx(expected, abs=tolerance)


def test_probes_for_matches_the_brief() -> None:
    assert abs(probes_for(0.5, 256) - 174) <= 2
    assert probes_for(0.98, 256) <= 1024
    assert probes_for(0.9997, 256) <= 2048
    assert probes_for(0.0, 256) == 0
    assert birthday_success(256, probes_for(1.0, 256)) == 1.0


@given(st.integers(min_value=1, max_value=1024), st.floats(min_value=0.01, max_value=0.999))
def test_probes_for_is_the_least_sufficient_count(sockets: int, target: float) -> None:
    n = probes_for(target, sockets)
    assert birthday_success(sockets, n) >= target
    assert birthday_success(sockets, n - 1) < target


@given(st.integers(min_value=0, max_value=2048), st.integers(min_value=0, max_value=4096))
def test_success_is_a_probability_growing_with_probes(sockets: int, probes: int) -> None:
    p = birthday_success(sockets, probes)
    assert 0.0 <= p <= 1.0
    assert birthday_success(sockets, probes + 1) >= p
    assert birthday_success(min(sockets + 1, PORT_SPACE), probes) >= p


def test_birthday_edges_and_errors() -> None:
    assert birthday_success(0, 1000) == 0.0
    assert birthday_success(256, 0) == 0.0
    assert birthday_success(256, PORT_SPACE - 255) == 1.0
    with pytest.raises(ValueError):
        birthday_success(-1, 10)
    with pytest.raises(ValueError):
        birthday_success(10, PORT_SPACE + 1)
    with pytest.raises(ValueError):
        probes_for(1.5, 256)
    with pytest.raises(ValueError):
        probes_for(0.5, 0)


def test_plan_birthday_respects_the_probe_cap() -> None:
    plan = plan_birthday(0.98)
    assert plan.sockets == 256 and plan.probes <= 1024 and plan.success_probability >= 0.98
    capped = plan_birthday(0.9999, max_probes=174)
    assert capped.probes == 174
    assert capped.success_probability == pytest.approx(0.5, abs=0.01)


@given(st.integers(min_value=0, max_value=2**32), st.integers(min_value=0, max_value=500))
def test_probe_ports_are_distinct_in_range_and_deterministic(seed: int, count: int) -> None:
    out = random_probe_ports(random.Random(seed), count)
    assert len(out) == len(set(out)) == count
    assert all(PORT_MIN <= p <= PORT_MAX for p in out)
    assert random_probe_ports(random.Random(seed), count) == out


@given(st.integers(min_value=0, max_value=2**32), st.lists(ports, max_size=50))
def test_probe_ports_skip_the_excluded(seed: int, exclude: list[int]) -> None:
    out = random_probe_ports(random.Random(seed), 100, exclude=exclude)
    assert not set(out) & set(exclude)
    assert len(set(out)) == 100


def test_probe_ports_reject_an_impossible_count() -> None:
    with pytest.raises(ValueError):
        random_probe_ports(random.Random(1), PORT_SPACE + 1)
    with pytest.raises(ValueError):
        random_probe_ports(random.Random(1), -1)
