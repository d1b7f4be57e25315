"""ReplayWindow: each stamped nonce of one sender once, none older than the lifetime."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from macula_nat.traversal.replay import ReplayWindow, nonce_time, stamped_nonce


def at(seconds: float, n: int = 0) -> bytes:
    return stamped_nonce(seconds, 8, lambda size: n.to_bytes(size, "big"))


def test_a_nonce_carries_its_senders_clock_in_milliseconds() -> None:
    assert nonce_time(at(12.3456)) == 12345
    assert at(1.0, 7) == (1000).to_bytes(4, "big") + (7).to_bytes(4, "big")
    assert nonce_time(at(2**32 / 1000 + 1.0)) == 1000  # modulo 2**32 ms (about 49.7 days)


def test_each_nonce_is_accepted_once() -> None:
    window = ReplayWindow(lifetime=30.0, capacity=16)
    assert window.accept(at(1.0, 1)) is True
    assert window.accept(at(1.0, 2)) is True
    assert window.accept(at(1.0, 1)) is False
    assert window.accept(at(1.0, 2)) is False
    assert len(window) == 2


def test_a_nonce_older_than_the_lifetime_by_the_senders_clock_is_refused() -> None:
    window = ReplayWindow(lifetime=30.0, capacity=16)
    assert window.accept(at(100.0, 1)) is True
    assert window.accept(at(70.0, 2)) is True  # exactly the lifetime, late but fresh
    assert window.accept(at(69.9, 3)) is False
    assert window.accept(at(131.0, 4)) is True
    assert window.accept(at(100.5, 5)) is False  # the newest moved on


def test_remembered_nonces_expire_with_the_lifetime() -> None:
    window = ReplayWindow(lifetime=1.0, capacity=1000)
    for n in range(100):
        assert window.accept(at(n * 0.1, n)) is True
    assert len(window) <= 12


def test_giving_up_a_remembered_nonce_for_room_never_lets_it_back() -> None:
    window = ReplayWindow(lifetime=30.0, capacity=2)
    first, second, third = at(1.0, 1), at(2.0, 2), at(3.0, 3)
    assert [window.accept(n) for n in (first, second, third)] == [True, True, True]
    assert len(window) == 2
    assert window.accept(first) is False  # forgotten, but at or below the floor
    assert window.accept(at(0.5, 9)) is False  # a late genuine one below it is refused too
    assert window.accept(at(1.5, 9)) is True


def test_the_clock_wraps_around() -> None:
    window = ReplayWindow(lifetime=30.0, capacity=16)
    wrap = 2**32 / 1000
    assert window.accept(at(wrap - 1.0, 1)) is True
    assert window.accept(at(wrap + 1.0, 2)) is True  # 2 s later, though its stamp is smaller
    assert window.accept(at(wrap - 1.0, 1)) is False
    assert window.accept(at(wrap - 40.0, 3)) is False


@pytest.mark.parametrize(("lifetime", "capacity"), [(0.0, 1), (1.0, 0)])
def test_bounds_are_validated(lifetime: float, capacity: int) -> None:
    with pytest.raises(ValueError):
        ReplayWindow(lifetime, capacity)


def test_a_stamped_nonce_needs_room_for_the_stamp() -> None:
    with pytest.raises(ValueError, match="at least 8 bytes"):
        stamped_nonce(0.0, 7)


@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=200_000), st.integers(0, 20)), max_size=300
    ),
    st.integers(min_value=1, max_value=50),
)
def test_no_nonce_is_ever_accepted_twice_nor_stale(
    offered: list[tuple[int, int]], capacity: int
) -> None:
    """Whatever the order, duplicates and evictions: a nonce passes at most once, never when
    more than the lifetime older than the newest one offered before it, and memory stays within
    the capacity."""
    window = ReplayWindow(lifetime=30.0, capacity=capacity)
    accepted: set[bytes] = set()
    newest = -1
    for millis, n in offered:
        nonce = at(millis / 1000, n)
        newest = max(newest, millis)
        if window.accept(nonce):
            assert nonce not in accepted
            assert newest - millis <= 30_000
            accepted.add(nonce)
        assert len(window) <= capacity
