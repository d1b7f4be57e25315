"""Per-source holdings (macula_nat.holdings), the one accounting of the relay and the DHT:
counts, oldest first, the largest holder, and eviction from it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from macula_nat.holdings import Holdings


def test_evict_takes_the_oldest_key_of_the_largest_holder() -> None:
    holdings: Holdings[int] = Holdings()
    for key in range(5):
        holdings.add("flood", key)
    holdings.add("a", 10)
    holdings.add("b", 20)
    holdings.add("b", 21)
    assert (len(holdings), holdings.sources, holdings.most) == (8, 3, 5)
    assert [holdings.evict() for _ in range(3)] == [("flood", 0), ("flood", 1), ("flood", 2)]
    assert holdings.most == 2
    assert holdings.evict()[1] in {3, 20}
    assert holdings.count("a") == 1


def test_adding_again_makes_a_key_the_newest() -> None:
    holdings: Holdings[str] = Holdings()
    holdings.add("s", "x")
    holdings.add("s", "y")
    holdings.add("s", "x")
    assert holdings.oldest("s") == "y"
    assert holdings.keys("s") == ["y", "x"] and holdings.keys("s", 1) == ["y"]
    assert len(holdings) == 2
    assert holdings.discard("s", "y") and not holdings.discard("s", "y")
    assert not holdings.discard("nobody", "x")


def test_a_source_holding_many_keys_keeps_their_order_however_they_leave() -> None:
    holdings: Holdings[int] = Holdings()
    model = list(range(40))
    for key in model:
        holdings.add("s", key)
    holdings.add("s", 3)  # again: now the newest
    model.remove(3)
    model.append(3)
    for key in [39, 0, 20, 3, *range(1, 40, 2), *range(0, 40, 2)]:
        assert holdings.discard("s", key) == (key in model)
        if key in model:
            model.remove(key)
        assert holdings.keys("s") == model and holdings.count("s") == len(holdings) == len(model)
    assert holdings.sources == 0 and holdings.most == 0


def test_empty() -> None:
    holdings: Holdings[int] = Holdings()
    assert holdings.largest() is None and holdings.most == 0
    assert holdings.keys("nobody", 8) == [] and holdings.count("nobody") == 0
    with pytest.raises(KeyError):
        holdings.evict()


_ops = st.lists(
    st.tuples(st.sampled_from(["add", "discard", "evict"]), st.integers(0, 4), st.integers(0, 6)),
    max_size=80,
)
_few_sources_many_keys = st.lists(
    st.tuples(
        st.sampled_from(["add", "add", "add", "discard", "evict"]),
        st.integers(0, 1),
        st.integers(0, 24),
    ),
    min_size=40,
    max_size=200,
)
"""Sources past the 16 keys a list holds, and back (macula_nat.holdings._LIST_MOST)."""


@settings(max_examples=200, deadline=None)
@given(st.one_of(_ops, _few_sources_many_keys), st.integers(0, 8))
def test_holdings_match_a_model(ops: list[tuple[str, int, int]], limit: int) -> None:
    holdings: Holdings[int] = Holdings()
    model: dict[str, list[int]] = {}
    for op, source_number, key in ops:
        source = f"s{source_number}"
        keys = model.setdefault(source, [])
        if op == "add":
            if key in keys:
                keys.remove(key)
            keys.append(key)
            holdings.add(source, key)
        elif op == "discard":
            assert holdings.discard(source, key) == (key in keys)
            if key in keys:
                keys.remove(key)
        elif any(model.values()):
            most = max(len(k) for k in model.values())
            evicted_source, evicted_key = holdings.evict()
            assert len(model[evicted_source]) == most  # the largest holder, always
            assert model[evicted_source][0] == evicted_key  # its oldest key
            model[evicted_source].pop(0)
        else:
            with pytest.raises(KeyError):
                holdings.evict()
        model = {s: k for s, k in model.items() if k}
        assert len(holdings) == sum(len(k) for k in model.values())
        assert holdings.sources == len(model)
        most = max((len(k) for k in model.values()), default=0)
        assert holdings.most == most
        largest = holdings.largest()
        assert (0 if largest is None else len(model[largest])) == most
        for s, k in model.items():
            assert holdings.count(s) == len(k)
            assert holdings.oldest(s) == k[0]
            assert holdings.keys(s) == k
            assert holdings.keys(s, limit) == k[:limit]
