"""Happy Eyeballs for punching: which addresses are probed when (pure, no clock)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from macula_nat.net.address import Address, ip_version
from macula_nat.traversal.happy_eyeballs import due, reachable
from tests.dht.strategies import addresses

V4: Address = ("203.0.113.7", 4000)
V6: Address = ("2001:db8:a::10", 4000)
LAN: Address = ("10.0.1.2", 4000)


def test_ipv6_goes_alone_until_the_head_start_is_over() -> None:
    targets = (V4, V6, LAN)
    assert due(targets, 0.0, 0.25) == (V6,)
    assert due(targets, 0.2, 0.25) == (V6,)
    assert due(targets, 0.25, 0.25) == targets
    assert due(targets, 9.0, 0.25) == targets


def test_ipv4_goes_at_once_when_no_ipv6_address_races_it() -> None:
    assert due((V4, LAN), 0.0, 0.25) == (V4, LAN)
    assert due((), 0.0, 0.25) == ()


def test_no_head_start_probes_everything_at_once() -> None:
    assert due((V4, V6), 0.0, 0.0) == (V4, V6)


def test_only_versions_the_socket_sends_to_are_reachable() -> None:
    targets = (V4, V6, LAN)
    assert reachable(targets, {4}) == (V4, LAN)
    assert reachable(targets, {6}) == (V6,)
    assert reachable(targets, {4, 6}) == targets


@given(st.lists(addresses, max_size=12), st.floats(0, 5), st.floats(0, 1))
def test_due_keeps_order_and_every_ipv6_address_and_drops_only_ipv4(
    targets: list[Address], elapsed: float, head_start: float
) -> None:
    chosen = due(targets, elapsed, head_start)
    assert list(chosen) == [t for t in targets if t in chosen]  # a subsequence, in order
    assert all(t in chosen for t in targets if ip_version(t[0]) == 6)
    dropped = [t for t in targets if t not in chosen]
    assert all(ip_version(t[0]) == 4 for t in dropped)
    if elapsed >= head_start or not any(ip_version(t[0]) == 6 for t in targets):
        assert chosen == tuple(targets)
