"""Fair shares per source (macula_nat.relay.shares), sans-IO: properties over any sequence of
takes and releases from any mix of sources."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from macula_nat.relay.shares import Admit, Evict, Refuse, SourceShares, share_of

SOURCES = [f"192.0.2.{n}" for n in range(1, 7)]

# (True, source): a new key from ``source`` asks for a slot; (False, n): the n-th held key leaves.
operations = st.lists(
    st.one_of(
        st.tuples(st.just(True), st.sampled_from(SOURCES)),
        st.tuples(st.just(False), st.integers(0, 1000)),
    ),
    max_size=150,
)


def _play(shares: SourceShares[int], source: str, key: int) -> tuple[bool, str | None]:
    """One take, done as the relay does it; (admitted, evicted source)."""
    decision = shares.decide(source)
    if isinstance(decision, Refuse):
        return False, None
    evicted = None
    if isinstance(decision, Evict):
        evicted = decision.source
        shares.discard(shares.oldest(evicted, 1)[0])
    shares.add(key, source)
    return True, evicted


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 20), st.floats(0.05, 1.0), operations)
def test_no_source_grows_past_its_share_while_the_table_is_full(
    capacity: int, fraction: float, ops: list[tuple[bool, str | int]]
) -> None:
    shares: SourceShares[int] = SourceShares(capacity, share_of(capacity, fraction))
    share = shares.share
    held: list[int] = []
    next_key = 0
    for take, value in ops:
        if not take:
            if held:
                key = held.pop(int(value) % len(held))
                shares.discard(key)
            continue
        source = str(value)
        before = {s: shares.held(s) for s in SOURCES}
        largest_before = shares.largest
        full = len(shares) >= capacity
        next_key += 1
        admitted, evicted = _play(shares, source, next_key)
        if admitted:
            held.append(next_key)
        if evicted is not None:
            held.remove(next(k for k in held if shares.source_of(k) is None))
            # eviction takes from the largest holder, and only one over its share
            assert before[evicted] == largest_before > share
        if full:
            # a full table never lets a source grow past its share
            assert shares.held(source) <= max(share, before[source])
            # a source under its share gets in while the largest holder is over its share
            if before[source] < share and largest_before > share:
                assert admitted
        else:
            assert admitted and evicted is None
        assert len(shares) <= capacity
        assert shares.largest == max(shares.held(s) for s in SOURCES)
        assert sum(shares.held(s) for s in SOURCES) == len(shares) == len(held)


def test_a_flooder_that_filled_the_table_loses_a_slot_to_each_newcomer_down_to_its_share() -> None:
    shares: SourceShares[int] = SourceShares(10, share_of(10, 0.2))
    for key in range(10):
        shares.add(key, "192.0.2.66")
    newcomers = [f"198.51.100.{n}" for n in range(1, 10)]

    decisions = []
    for key, newcomer in enumerate(newcomers, start=100):
        decision = shares.decide(newcomer)
        decisions.append(decision)
        if isinstance(decision, Evict):
            shares.discard(shares.oldest(decision.source, 1)[0])
            shares.add(key, newcomer)

    assert decisions[:8] == [Evict("192.0.2.66")] * 8  # down to its share of 2
    assert decisions[8] == Refuse()  # nobody over their share: the table is fairly shared
    assert shares.held("192.0.2.66") == 2
    assert shares.decide("192.0.2.66") == Refuse()


def test_a_key_that_moves_source_takes_no_new_slot() -> None:
    shares: SourceShares[str] = SourceShares(2, 1)
    shares.add("a", "192.0.2.1")
    shares.add("b", "192.0.2.2")

    assert shares.decide("192.0.2.3", renewing=True) == Admit()
    assert shares.decide("192.0.2.2", renewing=True) == Refuse()  # already holds its share
    shares.add("a", "192.0.2.3")
    assert shares.held("192.0.2.1") == 0 and shares.held("192.0.2.3") == 1 and len(shares) == 2


def test_bad_limits_are_a_clear_error() -> None:
    with pytest.raises(ValueError, match="share >= 1"):
        SourceShares(10, 0)
    assert share_of(5, 0.1) == 1  # a source may always hold one
