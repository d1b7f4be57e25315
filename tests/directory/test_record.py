"""The node record codec round-trips IPv4 and IPv6 alike (issue 13: IPv6 everywhere)."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from macula_nat.dht import bencoding
from macula_nat.dht.mutable_item import MAX_VALUE_SIZE
from macula_nat.directory.record import MAX_CANDIDATES, NodeRecord, RecordError
from macula_nat.nat.profile import NatProfile
from macula_nat.net.address import Address
from tests.dht.strategies import addresses, addresses6


def firewalled_v6_profile(address: Address) -> NatProfile:
    """A host with a global IPv6 address behind a stateful firewall: no NAT, filtered."""
    return NatProfile(
        mapping="ei",
        filtering="pd",
        allocation="pp",
        public_ip=address[0],
        public_port=address[1],
        detected_at=1_700_000_000.0,
        confidence="medium",
        nat_present=False,
        local_address=address,
        observers=[("2001:db8::10", 3478), ("2001:db8::11", 3479)],
    )


@given(
    candidates=st.lists(addresses, max_size=MAX_CANDIDATES),
    relay=st.none() | addresses,
    alternate=st.none() | addresses,
    own=addresses6,
    expires_at=st.integers(0, 2**40),
    seq=st.integers(0, 2**40),
)
def test_a_record_round_trips_with_both_families(
    candidates: list[Address],
    relay: Address | None,
    alternate: Address | None,
    own: Address,
    expires_at: int,
    seq: int,
) -> None:
    record = NodeRecord(
        profile=firewalled_v6_profile(own),
        home_relay=relay,
        home_relay_alternate=alternate,
        candidates=candidates,
        expires_at=expires_at,
        seq=seq,
    )
    decoded = NodeRecord.decode(record.encode(), seq)
    assert decoded == record
    assert decoded.profile is not None and decoded.profile.nat_type == "firewalled, no NAT"


def test_ipv6_candidates_are_normalised_on_the_way_in() -> None:
    record = NodeRecord(profile=None, candidates=[("2001:DB8:0::0:1", 4000)], expires_at=1)
    assert record.candidates == (("2001:db8::1", 4000),)


@pytest.mark.parametrize(
    ("candidate", "message"),
    [
        (b"\x20\x01" + bytes(15), "not a node record"),  # 17 bytes: neither 6 nor 18
        (b"\x01\x02\x03\x04\x05", "not a node record"),
    ],
)
def test_a_truncated_candidate_is_a_record_error(candidate: bytes, message: str) -> None:
    data = bencoding.encode({b"c": [candidate], b"e": 1})
    with pytest.raises(RecordError, match=message):
        NodeRecord.decode(data, 0)


def test_a_scoped_ipv6_candidate_is_refused_with_the_reason() -> None:
    record = NodeRecord(profile=None, candidates=[("fe80::1%eth0", 4000)], expires_at=1)
    with pytest.raises(ValueError, match="scope"):
        record.encode()


def largest_profile(address: Address, observers: int) -> NatProfile:
    """A profile with every optional field at its longest (what a record carries at worst)."""
    return NatProfile(
        mapping="pd", filtering="pd", allocation="pc",
        public_ip=address[0], public_port=address[1],
        detected_at=1_700_000_000.123456, confidence="medium",
        local_address=("2001:db8:ffff:ffff:ffff:ffff:ffff:fffe", 65535),
        hairpinning=True, port_delta=-65535,
        observers=[(f"2001:db8:ffff:ffff:ffff:ffff:ffff:{i:x}", 65535) for i in range(observers)],
        mapped=("2001:db8:ffff:ffff:ffff:ffff:ffff:fffd", 65535), udp_blocked=True,
    )  # fmt: skip


@given(
    candidates=st.lists(addresses6 | addresses, max_size=MAX_CANDIDATES),
    own=addresses6,
    observers=st.integers(0, 4),
    dual=st.booleans(),
)
def test_a_record_always_fits_a_bep44_value_and_loses_the_least_it_must(
    candidates: list[Address], own: Address, observers: int, dual: bool
) -> None:
    profile = largest_profile(own, observers)
    record = NodeRecord(
        profile=profile,
        profile6=profile if dual else None,
        home_relay=("2001:db8::1", 3480),
        home_relay_alternate=("198.51.100.1", 3480),
        candidates=candidates,
        expires_at=2**40,
    )
    data = record.encode()
    assert len(data) <= MAX_VALUE_SIZE
    decoded = NodeRecord.decode(data, 0)
    if decoded.candidates != record.candidates:  # cut: every observer went first
        assert decoded.profile is not None and not decoded.profile.observers
        assert record.candidates[: len(decoded.candidates)] == decoded.candidates
        one_more = record._encode(observers=False, candidates=len(decoded.candidates) + 1)
        assert len(one_more) > MAX_VALUE_SIZE  # as few as it must
    without_observers = attrs.evolve(profile, observers=())
    assert decoded.profile in (profile, without_observers)
    assert decoded.home_relay == record.home_relay and decoded.expires_at == record.expires_at


def test_a_dual_stack_record_with_sixteen_ipv6_candidates_keeps_them_all() -> None:
    """A dual-stack host with many IPv6 addresses: its record was over 1000 bytes, which no
    DHT node stores (and signing it failed); without the profiles' observers all fit."""
    profile4 = NatProfile(
        mapping="ei", filtering="pd", allocation="pc", public_ip="203.0.113.200",
        public_port=61234, detected_at=1_700_000_000.123456, confidence="high",
        local_address=("192.168.100.200", 40000), hairpinning=False, port_delta=2,
        observers=[("198.51.100.10", 3478), ("198.51.100.11", 3479)],
    )  # fmt: skip
    profile6 = firewalled_v6_profile(("2001:db8:ffff:1234:5678:9abc:def0:1234", 40000))
    candidates = [(f"2001:db8:ffff:1234:5678:9abc:def0:{i:04x}", 40000) for i in range(16)]
    record = NodeRecord(
        profile=profile4, profile6=profile6, home_relay=("2001:db8::1", 3480),
        home_relay_alternate=("198.51.100.1", 3480), candidates=candidates, expires_at=2**40,
    )  # fmt: skip
    assert len(record._encode(observers=True, candidates=16)) > MAX_VALUE_SIZE
    decoded = NodeRecord.decode(record.encode(), 0)
    assert decoded.candidates == record.candidates
    assert decoded.profile == attrs.evolve(profile4, observers=())
    assert decoded.profile6 == attrs.evolve(profile6, observers=())
