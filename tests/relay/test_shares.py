"""Fair shares per source (macula_nat.relay.shares), sans-IO: properties of the policy over any
sequence of takes and releases from any mix of sources (the accounting under it, Holdings, is
tested in tests/test_holdings.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from macula_nat.holdings import Holdings
from macula_nat.relay.shares import Admit, Evict, Refuse, Shares, share_of

SOURCES = [f"192.0.2.{n}" for n in range(1, 7)]

# (True, source): a new key from ``source`` asks for a slot; (False, n): the n-th held key leaves.
operations = st.lists(
    st.one_of(
        st.tuples(st.just(True), st.sampled_from(SOURCES)),
        st.tuples(st.just(False), st.integers(0, 1000)),
    ),
    max_size=150,
)


def _play(
    shares: Shares, holdings: Holdings[int], source: str, key: int
) -> tuple[bool, tuple[str, int] | None]:
    """One take, done as the relay does it; (admitted, (evicted source, its key))."""
    decision = shares.decide(holdings, source)
    if isinstance(decision, Refuse):
        return False, None
    evicted = None
    if isinstance(decision, Evict):
        evicted = (decision.source, holdings.oldest(decision.source))
        holdings.discard(*evicted)
    holdings.add(source, key)
    return True, evicted


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 20), st.floats(0.05, 1.0), operations)
def test_no_source_grows_past_its_share_while_the_table_is_full(
    capacity: int, fraction: float, ops: list[tuple[bool, str | int]]
) -> None:
    shares = Shares(capacity, share_of(capacity, fraction))
    share = shares.share
    holdings: Holdings[int] = Holdings()
    held: list[tuple[str, int]] = []
    next_key = 0
    for take, value in ops:
        if not take:
            if held:
                holdings.discard(*held.pop(int(value) % len(held)))
            continue
        source = str(value)
        before = {s: holdings.count(s) for s in SOURCES}
        largest_before = holdings.most
        full = len(holdings) >= capacity
        next_key += 1
        admitted, evicted = _play(shares, holdings, source, next_key)
        if admitted:
            held.append((source, next_key))
        if evicted is not None:
            held.remove(evicted)
            # eviction takes from the largest holder, and only one over its share
            assert before[evicted[0]] == largest_before > share
        if full:
            # a full table never lets a source grow past its share
            assert holdings.count(source) <= max(share, before[source])
            # a source under its share gets in while the largest holder is over its share
            if before[source] < share and largest_before > share:
                assert admitted
        else:
            assert admitted and evicted is None
        assert len(holdings) <= capacity
        assert sum(holdings.count(s) for s in SOURCES) == len(holdings) == len(held)


def test_a_flooder_that_filled_the_table_loses_a_slot_to_each_newcomer_down_to_its_share() -> None:
    shares = Shares(10, share_of(10, 0.2))
    holdings: Holdings[int] = Holdings()
    for key in range(10):
        holdings.add("192.0.2.66", key)
    newcomers = [f"198.51.100.{n}" for n in range(1, 10)]

    decisions = []
    for key, newcomer in enumerate(newcomers, start=100):
        decision = shares.decide(holdings, newcomer)
        decisions.append(decision)
        if isinstance(decision, Evict):
            holdings.discard(decision.source, holdings.oldest(decision.source))
            holdings.add(newcomer, key)

    assert decisions[:8] == [Evict("192.0.2.66")] * 8  # down to its share of 2
    assert decisions[8] == Refuse()  # nobody over their share: the table is fairly shared
    assert holdings.count("192.0.2.66") == 2
    assert shares.decide(holdings, "192.0.2.66") == Refuse()


def test_a_key_that_moves_source_takes_no_new_slot() -> None:
    shares = Shares(2, 1)
    holdings: Holdings[str] = Holdings()
    holdings.add("192.0.2.1", "a")
    holdings.add("192.0.2.2", "b")

    assert shares.decide(holdings, "192.0.2.3", renewing=True) == Admit()
    assert shares.decide(holdings, "192.0.2.2", renewing=True) == Refuse()  # holds its share


def test_bad_limits_are_a_clear_error() -> None:
    with pytest.raises(ValueError, match="share"):
        Shares(10, 0)
    with pytest.raises(ValueError, match="capacity"):
        Shares(-1, 1)
    assert share_of(5, 0.1) == 1  # a source may always hold one
