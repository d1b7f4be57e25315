"""Announced peers: newest first, capped, and expiring."""

from __future__ import annotations

import pytest

from macula_nat.dht.node_id import NodeId
from macula_nat.dht.peer_store import PEER_LIFETIME, PeerStore

HASH = NodeId(1)


def test_peers_newest_first_with_limit() -> None:
    store = PeerStore()
    for port in range(1, 6):
        store.announce(HASH, ("192.0.2.1", port), float(port))
    store.announce(HASH, ("192.0.2.1", 2), 10.0)  # re-announced: now the newest
    assert store.peers(HASH, 10.0, limit=3) == [
        ("192.0.2.1", 2),
        ("192.0.2.1", 5),
        ("192.0.2.1", 4),
    ]
    assert store.peers(NodeId(2), 10.0) == []


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


def test_caps_drop_the_stalest() -> None:
    store = PeerStore(max_peers=2, max_info_hashes=2)
    for port in range(3):
        store.announce(HASH, ("192.0.2.1", port), float(port))
    assert store.peers(HASH, 3.0) == [("192.0.2.1", 2), ("192.0.2.1", 1)]
    store.announce(NodeId(2), ("192.0.2.2", 1), 0.5)
    store.announce(NodeId(3), ("192.0.2.3", 1), 4.0)
    assert len(store) == 2
    assert store.peers(NodeId(2), 4.0) == []
    assert store.peers(HASH, 4.0) != []


def test_bad_input() -> None:
    with pytest.raises(ValueError):
        PeerStore(max_peers=0)
    with pytest.raises(ValueError):
        PeerStore().announce(HASH, ("not an ip", 1), 0.0)
