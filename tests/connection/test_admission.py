"""Handshake slots per source (sans-IO): what a flood of Initials can and cannot take."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from macula_nat.connection.admission import (
    Admission,
    HandshakeLimits,
    HandshakeSlots,
    Verdict,
)

LIMITS = HandshakeLimits(max_handshakes=8, per_source=2, retry_threshold=3)


def test_unproven_addresses_get_a_retry_once_they_hold_the_threshold() -> None:
    slots = HandshakeSlots(LIMITS)
    for n in range(3):
        assert slots.decide(f"10.0.0.{n}", proven=False) == Admission(Verdict.START)
        slots.take(n, f"10.0.0.{n}", proven=False)
    assert slots.decide("10.0.0.9", proven=False) == Admission(Verdict.RETRY)
    assert slots.decide("10.0.0.9", proven=True) == Admission(Verdict.START)


def test_a_proven_source_holds_its_share_and_no_more() -> None:
    slots = HandshakeSlots(LIMITS)
    slots.take("a", "10.0.0.1", proven=True)
    slots.take("b", "10.0.0.1", proven=True)
    assert slots.decide("10.0.0.1", proven=True) == Admission(Verdict.REFUSE)
    slots.release("a")
    assert slots.decide("10.0.0.1", proven=True) == Admission(Verdict.START)


def test_when_full_a_proven_newcomer_evicts_an_unproven_handshake_first() -> None:
    slots = HandshakeSlots(HandshakeLimits(max_handshakes=3, per_source=3, retry_threshold=1))
    slots.take("proven", "10.0.0.1", proven=True)
    slots.take("unproven", "10.0.0.2", proven=False)
    slots.take("proven too", "10.0.0.1", proven=True)
    assert slots.decide("10.0.0.3", proven=True) == Admission(Verdict.START, evict="unproven")


def test_when_full_of_proven_handshakes_the_largest_holder_gives_way() -> None:
    slots = HandshakeSlots(HandshakeLimits(max_handshakes=4, per_source=3, retry_threshold=1))
    for key, source in [("a1", "a"), ("b1", "b"), ("a2", "a"), ("a3", "a")]:
        slots.take(key, source, proven=True)
    assert slots.decide("c", proven=True) == Admission(Verdict.START, evict="a1")
    slots.release("a1")
    slots.take("c1", "c", proven=True)
    assert slots.decide("c", proven=True) == Admission(Verdict.REFUSE)  # a 2, b 1, c 1: fair


SOURCES = st.sampled_from([f"10.0.0.{n}" for n in range(5)])
EVENTS = st.lists(
    st.one_of(
        st.tuples(st.just("initial"), SOURCES, st.booleans()),
        st.tuples(st.just("end"), st.integers(0, 50), st.just(False)),
    ),
    max_size=200,
)


@given(EVENTS, st.integers(1, 6), st.integers(1, 3), st.integers(0, 6))
def test_the_limits_hold_whatever_arrives(
    events: list[tuple[str, object, bool]], most: int, per_source: int, threshold: int
) -> None:
    limits = HandshakeLimits(max_handshakes=most, per_source=per_source, retry_threshold=threshold)
    slots = HandshakeSlots(limits)
    live: list[int] = []
    proven_by_key: dict[int, tuple[str, bool]] = {}
    for n, (kind, what, proven) in enumerate(events):
        if kind == "end":
            if live:
                key = live.pop(int(what) % len(live))  # type: ignore[call-overload]
                slots.release(key)
            continue
        source = str(what)
        admission = slots.decide(source, proven=proven)
        if admission.verdict is Verdict.START:
            if admission.evict is not None:
                assert admission.evict in live
                live.remove(admission.evict)  # type: ignore[arg-type]
                slots.release(admission.evict)
            slots.take(n, source, proven=proven)
            live.append(n)
            proven_by_key[n] = (source, proven)
        assert slots.pending == len(live) <= limits.max_handshakes
        assert slots.unproven <= min(limits.retry_threshold, limits.max_handshakes)
        for held_by in {proven_by_key[key][0] for key in live}:
            assert slots.held_by(held_by) <= limits.per_source
