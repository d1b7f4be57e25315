"""The BEP 44 item store: which puts it accepts, with which error codes, and expiry."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from macula_nat.dht.error_code import ErrorCode
from macula_nat.dht.item_store import ITEM_LIFETIME, ItemStore, PutRejected
from macula_nat.dht.mutable_item import ImmutableItem, MutableItem

from .test_mutable_item import PUBLIC_KEY, SIGNATURE_1, SIGNATURE_2, TARGET_1, TARGET_2, VALUE

KEYS = [Ed25519PrivateKey.from_private_bytes(bytes([n]) * 32) for n in range(2)]


def signed(seq: int, value: bytes = b"1:a", *, key: int = 0, salt: bytes = b"") -> MutableItem:
    return MutableItem.sign(KEYS[key], value, seq, salt)


def rejected(store: ItemStore, item: MutableItem | ImmutableItem, *, cas: int | None = None) -> int:
    with pytest.raises(PutRejected) as caught:
        store.put(item, 10.0, cas=cas)
    return caught.value.code


def test_bep44_vectors_are_stored_under_their_targets() -> None:
    store = ItemStore()
    first = MutableItem(PUBLIC_KEY, 1, VALUE, SIGNATURE_1)
    salted = MutableItem(PUBLIC_KEY, 1, VALUE, SIGNATURE_2, b"foobar")
    store.put(first, 0.0)
    store.put(salted, 0.0)
    assert store.get(TARGET_1, 1.0) == first
    assert store.get(TARGET_2, 1.0) == salted
    assert len(store) == 2


def test_forged_signature_is_206() -> None:
    store = ItemStore()
    assert rejected(store, MutableItem(PUBLIC_KEY, 2, VALUE, SIGNATURE_1)) == 206
    assert rejected(store, MutableItem(PUBLIC_KEY, 1, VALUE, SIGNATURE_2)) == 206
    assert len(store) == 0


def test_sequence_numbers_only_move_forward() -> None:
    store = ItemStore()
    store.put(signed(5), 0.0)
    assert rejected(store, signed(4)) == ErrorCode.SEQUENCE_TOO_OLD
    assert rejected(store, signed(5, b"1:b")) == ErrorCode.SEQUENCE_TOO_OLD
    store.put(signed(5), 10.0)  # same seq, same value: refresh
    store.put(signed(6, b"1:b"), 10.0)
    assert store.get(signed(6).target, 10.0) == signed(6, b"1:b")


def test_replayed_old_record_never_returns() -> None:
    store = ItemStore()
    old, new = signed(1, b"3:old"), signed(2, b"3:new")
    store.put(old, 0.0)
    store.put(new, 1.0)
    assert rejected(store, old) == ErrorCode.SEQUENCE_TOO_OLD
    assert store.get(new.target, 2.0) == new


def test_compare_and_swap() -> None:
    store = ItemStore()
    store.put(signed(3), 0.0, cas=7)  # nothing stored: cas is ignored
    assert rejected(store, signed(4), cas=2) == ErrorCode.CAS_MISMATCH
    store.put(signed(4), 0.0, cas=3)
    assert store.get(signed(4).target, 0.0) == signed(4)
    assert rejected(store, ImmutableItem(b"0:"), cas=1) == ErrorCode.PROTOCOL


def test_cas_is_checked_before_seq() -> None:
    store = ItemStore()
    store.put(signed(3), 0.0)
    assert rejected(store, signed(2), cas=9) == ErrorCode.CAS_MISMATCH


def test_keys_and_salts_are_separate_slots() -> None:
    store = ItemStore()
    items = [signed(9, key=0), signed(1, key=1), signed(1, key=0, salt=b"s")]
    for item in items:
        store.put(item, 0.0)
    assert [store.get(item.target, 0.0) for item in items] == items


def test_items_expire_unless_put_again() -> None:
    store = ItemStore(lifetime=100.0)
    item, blob = signed(1), ImmutableItem(b"4:blob")
    store.put(item, 0.0)
    store.put(blob, 0.0)
    store.put(item, 60.0)  # same seq and value: the lifetime restarts
    store.put(blob, 60.0)
    assert store.get(item.target, 159.0) == item
    assert store.targets(159.0) == [item.target, blob.target]
    assert store.get(item.target, 160.0) is None
    assert store.expire(160.0) == 1
    assert len(store) == 0
    store.put(signed(0), 200.0)  # an expired item no longer blocks older seqs
    assert store.get(item.target, 200.0) == signed(0)


def test_capacity_evicts_one_sources_item_closest_to_expiry() -> None:
    store = ItemStore(capacity=2, lifetime=100.0)
    first, second, third = (ImmutableItem(b"i%de" % n) for n in range(3))
    store.put(first, 0.0)
    store.put(second, 1.0)
    store.put(first, 2.0)
    store.put(third, 3.0)
    assert store.get(second.target, 3.0) is None
    assert store.get(first.target, 3.0) == first
    assert store.get(third.target, 3.0) == third


def test_a_flood_from_one_source_evicts_only_its_own_items() -> None:
    store = ItemStore(capacity=10, per_source=100, lifetime=1000.0)
    others = [ImmutableItem(b"i%de" % n) for n in range(4)]
    for n, item in enumerate(others):
        store.put(item, 0.0, source=f"192.0.2.{n}")
    flood = [ImmutableItem(b"3:f%02d" % n) for n in range(50)]
    for n, item in enumerate(flood):
        store.put(item, 1.0 + n, source="203.0.113.66")
    assert all(store.get(item.target, 60.0) == item for item in others)
    assert store.held_by("203.0.113.66") == 6
    assert (len(store), store.sources, store.largest_holding) == (10, 5, 6)
    assert [store.get(item.target, 60.0) for item in flood[-6:]] == flood[-6:]


def test_a_source_at_its_quota_replaces_its_oldest_item() -> None:
    store = ItemStore(capacity=100, per_source=3, lifetime=1000.0)
    items = [ImmutableItem(b"i%de" % n) for n in range(5)]
    for n, item in enumerate(items):
        store.put(item, float(n), source="2001:db8::/64")
    assert [store.get(item.target, 9.0) is not None for item in items] == [False, False] + [
        True
    ] * 3
    store.put(items[2], 9.0, source="2001:db8::/64")  # a refresh makes it the newest
    store.put(items[0], 10.0, source="2001:db8::/64")
    assert store.get(items[3].target, 10.0) is None
    assert store.held_by("2001:db8::/64") == 3


_sourced_puts = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 30), st.floats(0, 10)))


@settings(max_examples=150, deadline=None)
@given(_sourced_puts)
def test_eviction_takes_from_the_largest_holder(puts: list[tuple[int, int, float]]) -> None:
    """Whatever the puts: the store stays within its bounds, and an item that goes before it
    expires belonged to a source holding the most items at that moment."""
    store = ItemStore(capacity=8, per_source=5, lifetime=100.0)
    owners: dict[ImmutableItem, str] = {}
    now = 0.0
    for source_number, value, step in puts:
        now += step
        source = f"10.0.0.{source_number}"
        item = ImmutableItem(b"i%de" % value)
        before = {o: store.held_by(o) for o in set(owners.values())}
        live = {i for i in owners if store.get(i.target, now) is not None}
        owners = {i: o for i, o in owners.items() if i in live}
        store.put(item, now, source=source)
        owners.setdefault(item, source)
        gone = [i for i in live if store.get(i.target, now) is None]
        assert len(gone) <= 1
        for lost in gone:
            owner = owners.pop(lost)
            assert owner == source or before[owner] == max(before.values())
        assert len(store) <= 8
        assert all(store.held_by(o) <= 5 for o in before)


def test_configuration_is_checked() -> None:
    with pytest.raises(ValueError):
        ItemStore(lifetime=0)
    with pytest.raises(ValueError):
        ItemStore(capacity=0)
    with pytest.raises(ValueError):
        ItemStore(per_source=0)
    assert ITEM_LIFETIME == 7200.0


_ITEMS = {
    (key, salt, seq, value): signed(seq, value, key=key, salt=salt)
    for key in (0, 1)
    for salt in (b"", b"x")
    for seq in range(4)
    for value in (b"1:a", b"1:b")
}

_puts = st.tuples(
    st.sampled_from(sorted(_ITEMS)),
    st.none() | st.integers(0, 3),
    st.booleans(),
    st.floats(0, 60),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_puts, max_size=30))
def test_store_matches_a_model(
    puts: list[tuple[tuple[int, bytes, int, bytes], int | None, bool, float]],
) -> None:
    """Random puts (some forged) against BEP 44's rules written out plainly."""
    store = ItemStore(lifetime=100.0)
    model: dict[object, tuple[int, bytes, float]] = {}
    now = 0.0
    for (key, salt, seq, value), cas, forged, step in puts:
        now += step
        item = _ITEMS[(key, salt, seq, value)]
        if forged:
            item = MutableItem(item.public_key, item.seq, item.value, bytes(64), item.salt)
        slot = (key, salt)
        live = model.get(slot)
        if live is not None and live[2] <= now:
            live = None
        if forged:
            expected: int | None = ErrorCode.INVALID_SIGNATURE
        elif live is not None and cas is not None and cas != live[0]:
            expected = ErrorCode.CAS_MISMATCH
        elif live is not None and (seq < live[0] or (seq == live[0] and value != live[1])):
            expected = ErrorCode.SEQUENCE_TOO_OLD
        else:
            expected = None
            model[slot] = (seq, value, now + 100.0)
        try:
            store.put(item, now, cas=cas)
        except PutRejected as error:
            assert error.code == expected
        else:
            assert expected is None
        for (k, s), (m_seq, m_value, expires) in model.items():
            got = store.get(_ITEMS[(k, s, 0, b"1:a")].target, now)
            if expires <= now:
                assert got is None
            else:
                assert isinstance(got, MutableItem)
                assert (got.seq, got.value) == (m_seq, m_value)
                assert got.verify()
