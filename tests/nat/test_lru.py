"""The cache's pure core against a plain-list model: size bound, LRU order, freshness, counters."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from macula_nat.nat.lru import MISSING, Lookup, LookupState, SwrLru

KEYS = st.sampled_from("abcdefgh")
DURATIONS = st.integers(min_value=0, max_value=20).map(float)


class SwrLruModel(RuleBasedStateMachine):
    """Keeps ``[key, value, fresh_until, stale_until]`` rows, least recently used first."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.rows: list[tuple[str, int, float, float]] = []
        self.counts = {"hits": 0, "stale_hits": 0, "misses": 0, "evictions": 0, "expired": 0}
        self.table: SwrLru[str, int] = SwrLru(1)
        self.max_entries = 1

    @initialize(max_entries=st.integers(min_value=1, max_value=5))
    def start(self, max_entries: int) -> None:
        self.table = SwrLru(max_entries)
        self.max_entries = max_entries

    def _row(self, key: str) -> tuple[str, int, float, float] | None:
        return next((row for row in self.rows if row[0] == key), None)

    def _fit(self) -> None:
        while len(self.rows) > self.max_entries:
            self.rows.pop(0)
            self.counts["evictions"] += 1

    @rule(key=KEYS, value=st.integers(), ttl=DURATIONS, grace=DURATIONS)
    def insert(self, key: str, value: int, ttl: float, grace: float) -> None:
        evicted_before = self.counts["evictions"]
        row = self._row(key)
        if row is not None:
            self.rows.remove(row)
        self.rows.append((key, value, self.now + ttl, self.now + ttl + grace))
        self._fit()
        expected = self.counts["evictions"] - evicted_before
        assert self.table.insert(key, value, self.now + ttl, self.now + ttl + grace) == expected

    @rule(key=KEYS)
    def lookup(self, key: str) -> None:
        row = self._row(key)
        expected: Lookup[int] = MISSING
        if row is None:
            self.counts["misses"] += 1
        else:
            _, value, fresh_until, stale_until = row
            self.rows.remove(row)
            if self.now <= fresh_until:
                self.rows.append(row)
                self.counts["hits"] += 1
                expected = Lookup(value, LookupState.FRESH)
            elif self.now <= stale_until:
                self.rows.append(row)
                self.counts["stale_hits"] += 1
                expected = Lookup(value, LookupState.STALE)
            else:
                self.counts["misses"] += 1
                self.counts["expired"] += 1
        assert self.table.lookup(key, self.now) == expected

    @rule(key=KEYS)
    def remove(self, key: str) -> None:
        row = self._row(key)
        if row is not None:
            self.rows.remove(row)
        assert self.table.remove(key) is (row is not None)

    @rule(seconds=DURATIONS)
    def advance(self, seconds: float) -> None:
        self.now += seconds

    @rule()
    def purge(self) -> None:
        dead = [row for row in self.rows if self.now > row[3]]
        self.rows = [row for row in self.rows if row not in dead]
        self.counts["expired"] += len(dead)
        assert self.table.purge(self.now) == len(dead)

    @rule(max_entries=st.integers(min_value=1, max_value=5))
    def resize(self, max_entries: int) -> None:
        self.max_entries = max_entries
        before = self.counts["evictions"]
        self._fit()
        assert self.table.resize(max_entries) == self.counts["evictions"] - before

    @invariant()
    def same_contents_in_lru_order_within_the_bound(self) -> None:
        assert len(self.table) <= self.table.max_entries == self.max_entries
        assert list(self.table.keys()) == [row[0] for row in self.rows]

    @invariant()
    def same_counters(self) -> None:
        assert {name: getattr(self.table, name) for name in self.counts} == self.counts


SwrLruModel.TestCase.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
test_swr_lru_matches_the_model = SwrLruModel.TestCase


def test_a_full_table_evicts_the_least_recently_used_not_the_oldest() -> None:
    table: SwrLru[str, int] = SwrLru(2)
    table.insert("old", 1, 10.0, 10.0)
    table.insert("new", 2, 10.0, 10.0)
    assert table.lookup("old", 0.0).state is LookupState.FRESH  # "old" is now the most recent
    assert table.insert("third", 3, 10.0, 10.0) == 1
    assert list(table.keys()) == ["old", "third"]
    assert table.evictions == 1


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        SwrLru(0)
    with pytest.raises(ValueError, match="stale_until"):
        SwrLru[str, int](1).insert("a", 1, 5.0, 4.0)
