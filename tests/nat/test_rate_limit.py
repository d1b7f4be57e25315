"""Token buckets per source: the budget each source gets, and the bounded table holding them."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from macula_nat.nat.rate_limit import TokenBuckets


def test_a_new_source_gets_its_burst_then_the_rate() -> None:
    buckets = TokenBuckets(rate=10.0, burst=5.0, capacity=100)

    assert [buckets.allow("a", 0.0) for _ in range(6)] == [True] * 5 + [False]
    assert not buckets.allow("a", 0.05)  # half a token
    assert buckets.allow("a", 0.1)
    assert not buckets.allow("a", 0.1)


def test_sources_have_separate_budgets() -> None:
    buckets = TokenBuckets(rate=1.0, burst=1.0, capacity=100)

    assert buckets.allow("a", 0.0)
    assert not buckets.allow("a", 0.0)
    assert buckets.allow("b", 0.0)


def test_an_idle_source_saves_up_no_more_than_its_burst() -> None:
    buckets = TokenBuckets(rate=100.0, burst=3.0, capacity=100)
    buckets.allow("a", 0.0)

    assert sum(buckets.allow("a", 3600.0) for _ in range(10)) == 3


def test_the_table_forgets_the_least_recently_seen_source_first() -> None:
    buckets = TokenBuckets(rate=1.0, burst=1.0, capacity=3)
    for key in "abc":
        buckets.allow(key, 0.0)
    buckets.allow("a", 0.0)  # seen again: now the most recent

    buckets.allow("d", 0.0)

    assert len(buckets) == 3
    assert buckets.evictions == 1
    assert not buckets.allow("a", 0.0)  # remembered, still empty
    assert buckets.allow("b", 0.0)  # forgotten, so it starts afresh


def test_a_flood_of_new_sources_stays_within_capacity() -> None:
    buckets = TokenBuckets(rate=1.0, burst=1.0, capacity=1000)
    for number in range(50_000):
        buckets.allow(number, 0.0)

    assert len(buckets) == 1000
    assert buckets.evictions == 49_000


@pytest.mark.parametrize(
    ("rate", "burst", "capacity"),
    [(0.0, 1.0, 1), (-1.0, 1.0, 1), (float("inf"), 1.0, 1), (1.0, 0.5, 1), (1.0, 1.0, 0)],
)
def test_impossible_limits_are_rejected(rate: float, burst: float, capacity: int) -> None:
    with pytest.raises(ValueError):
        TokenBuckets(rate, burst, capacity)


@settings(max_examples=300, deadline=None)
@given(
    st.floats(0.5, 1000.0),
    st.integers(1, 50),
    st.lists(st.floats(0.0, 0.5), min_size=1, max_size=300),
)
def test_no_source_gets_more_than_burst_plus_rate_times_time(
    rate: float, burst: int, gaps: list[float]
) -> None:
    buckets = TokenBuckets(rate, burst, capacity=10)
    times = list(itertools.accumulate(gaps))

    allowed = sum(buckets.allow("a", now) for now in times)

    assert allowed <= burst + rate * (times[-1] - times[0]) + 1e-6


@settings(max_examples=200, deadline=None)
@given(st.floats(0.5, 1000.0), st.integers(1, 50), st.integers(1, 200))
def test_a_source_within_its_rate_is_never_refused(rate: float, burst: int, events: int) -> None:
    buckets = TokenBuckets(rate, burst, capacity=10)
    spacing = 1.0 / rate

    assert all(buckets.allow("a", i * spacing * 1.001) for i in range(events))
