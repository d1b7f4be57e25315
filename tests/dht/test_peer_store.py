"""Announced peers: newest first, capped, expiring, and shared fairly between sources."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from macula_nat.dht.node_id import NodeId
from macula_nat.dht.peer_store import PEER_LIFETIME, PeerStore

HASH = NodeId(1)


def test_peers_newest_first_with_limit() -> None:
    store = PeerStore()
    for n in range(1, 6):
        store.announce(HASH, (f"192.0.2.{n}", n), float(n))
    store.announce(HASH, ("192.0.2.2", 2), 10.0)  # re-announced: now the newest
    assert store.peers(HASH, 10.0, limit=3) == [
        ("192.0.2.2", 2),
        ("192.0.2.5", 5),
        ("192.0.2.4", 4),
    ]
    assert store.peers(NodeId(2), 10.0) == []


def test_a_source_has_one_announcement_per_info_hash() -> None:
    """Another port from the same IPv4 address, or from the same IPv6 /64, replaces it: one
    host cannot fill a swarm by announcing many ports."""
    store = PeerStore()
    for port in range(1, 100):
        store.announce(HASH, ("192.0.2.1", port), float(port))
    store.announce(HASH, ("2001:db8:1:2::1", 1), 100.0)
    store.announce(HASH, ("2001:db8:1:2::2", 2), 101.0)
    assert store.peers(HASH, 102.0) == [("2001:db8:1:2::2", 2), ("192.0.2.1", 99)]
    assert store.announcements == 2


def test_announcements_expire() -> None:
    store = PeerStore(lifetime=100.0)
    store.announce(HASH, ("192.0.2.1", 1), 0.0)
    store.announce(HASH, ("2001:db8::1", 2), 50.0)
    assert store.peers(HASH, 99.0) == [("2001:db8::1", 2), ("192.0.2.1", 1)]
    assert store.peers(HASH, 100.0) == [("2001:db8::1", 2)]
    assert store.expire(100.0) == 1
    assert store.expire(150.0) == 1
    assert len(store) == 0
    assert PEER_LIFETIME == 1800.0


def test_a_full_swarm_drops_the_largest_holders_announcement() -> None:
    store = PeerStore(max_peers=3)
    store.announce(HASH, ("192.0.2.1", 1), 0.0)  # the oldest, but it holds only this one
    for n in range(2, 6):
        store.announce(NodeId(n), ("192.0.2.9", 9), float(n))  # 192.0.2.9 holds the most
    store.announce(HASH, ("192.0.2.9", 9), 6.0)
    store.announce(HASH, ("192.0.2.2", 2), 7.0)
    store.announce(HASH, ("192.0.2.3", 3), 8.0)
    assert store.peers(HASH, 9.0) == [("192.0.2.3", 3), ("192.0.2.2", 2), ("192.0.2.1", 1)]


def test_a_source_over_its_quota_replaces_its_oldest() -> None:
    store = PeerStore(per_source=3)
    for n in range(1, 6):
        store.announce(NodeId(n), ("192.0.2.1", 1), float(n))
    assert store.held_by("192.0.2.1") == 3
    assert [bool(store.peers(NodeId(n), 9.0)) for n in range(1, 6)] == [False, False] + [True] * 3
    assert len(store) == 3


def test_new_info_hashes_when_full() -> None:
    """A new info-hash takes the place of the largest holder's oldest announcement if that is
    a swarm of its own; when every swarm is shared, it is refused and nothing is lost."""
    store = PeerStore(max_info_hashes=3)
    store.announce(NodeId(1), ("192.0.2.1", 1), 0.0)
    store.announce(NodeId(1), ("192.0.2.2", 1), 0.0)
    store.announce(NodeId(2), ("192.0.2.66", 1), 1.0)
    store.announce(NodeId(3), ("192.0.2.66", 1), 2.0)
    assert store.announce(NodeId(4), ("192.0.2.3", 1), 3.0)  # 192.0.2.66's oldest went
    assert store.peers(NodeId(2), 4.0) == [] and store.peers(NodeId(3), 4.0)
    store.announce(NodeId(3), ("192.0.2.4", 1), 4.0)
    store.announce(NodeId(4), ("192.0.2.5", 1), 4.0)
    assert not store.announce(NodeId(5), ("192.0.2.6", 1), 5.0)
    assert (store.refused, store.announcements, len(store)) == (1, 6, 3)


def test_bad_input() -> None:
    with pytest.raises(ValueError):
        PeerStore(max_peers=0)
    with pytest.raises(ValueError):
        PeerStore(per_source=0)
    with pytest.raises(ValueError):
        PeerStore().announce(HASH, ("not an ip", 1), 0.0)


_announces = st.lists(
    st.tuples(st.integers(1, 6), st.integers(0, 5), st.integers(1, 3), st.floats(0, 50)),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(_announces)
def test_bounds_hold_and_eviction_spares_smaller_holders(
    announces: list[tuple[int, int, int, float]],
) -> None:
    """Whatever the announcements: entries per swarm, swarms and per-source holdings stay
    within their caps, and a live announcement that goes belonged to the announcer itself or
    to a largest holder (in its swarm, or of all, for a new info-hash's slot)."""
    store = PeerStore(max_peers=3, max_info_hashes=4, per_source=3, lifetime=100.0)
    now = 0.0
    for info, host, port, step in announces:
        now += step
        ip = f"10.0.0.{host}"
        before = {
            (n, p): store.held_by(p[0]) for n in range(1, 7) for p in store.peers(NodeId(n), now)
        }
        stored = store.announce(NodeId(info), (ip, port), now)
        after = {(n, p) for n in range(1, 7) for p in store.peers(NodeId(n), now)}
        lost = [(n, p) for (n, p) in before if (n, p) not in after and p[0] != ip]
        assert len(lost) <= 1
        for n, p in lost:
            if n == info:  # a full swarm: its largest holder went
                in_swarm = [held for (m, _), held in before.items() if m == n]
                assert before[n, p] == max(in_swarm)
            else:  # a slot for a new info-hash: the largest holder's, alone in its swarm
                # (the announcer may have just given up one of its own, at its quota)
                mine = store.held_by(ip)
                assert before[n, p] >= max(v for (_, q), v in before.items() if q[0] != ip)
                assert before[n, p] >= mine - 1
        if not stored:
            assert len(store) == 4 and (info, (ip, port)) not in after
        assert len(store) <= 4 and store.largest_holding <= 3
        assert all(len(store.peers(NodeId(n), now, 100)) <= 3 for n in range(1, 7))
