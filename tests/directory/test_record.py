"""The node record codec round-trips IPv4 and IPv6 alike (issue 13: IPv6 everywhere)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from macula_nat.dht import bencoding
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
