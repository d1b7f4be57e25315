"""NatProfile: validation, JSON round trips, change detection and the classic type names."""

from __future__ import annotations

import json

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from macula_nat.behavior import FilteringBehavior, MappingBehavior, PortAllocation
from macula_nat.nat.profile import Confidence, NatProfile

addresses = st.tuples(st.ip_addresses(v=4).map(str), st.integers(min_value=1, max_value=65535))
profiles = st.builds(
    NatProfile,
    mapping=st.sampled_from(MappingBehavior),
    filtering=st.sampled_from(FilteringBehavior),
    allocation=st.sampled_from(PortAllocation),
    public_ip=st.ip_addresses().map(str),
    public_port=st.integers(min_value=0, max_value=65535),
    detected_at=st.floats(min_value=0, max_value=4e9),
    confidence=st.sampled_from(Confidence),
    nat_present=st.booleans(),
    local_address=st.none() | addresses,
    hairpinning=st.none() | st.booleans(),
    port_delta=st.none() | st.integers(min_value=-100, max_value=100),
    observers=st.lists(addresses, max_size=3).map(tuple),
    udp_blocked=st.booleans(),
)


@given(profiles)
def test_json_round_trip(profile: NatProfile) -> None:
    assert NatProfile.from_json(json.loads(json.dumps(profile.to_json()))) == profile


def test_the_erlang_codes_are_accepted_and_compare_equal() -> None:
    profile = NatProfile("ei", "pd", "pp", "203.0.113.5", 4000, 0.0, "high")
    assert profile.classification == ("ei", "pd", "pp")
    assert profile.nat_type == "port-restricted cone"
    assert attrs.evolve(profile, mapping="pd").nat_type == "symmetric"
    assert attrs.evolve(profile, filtering="ei").nat_type == "full cone"


def test_bad_input_is_refused_with_the_field_named() -> None:
    with pytest.raises(ValueError, match="public_port"):
        NatProfile("ei", "pd", "pp", "203.0.113.5", 70000, 0.0, "high")
    with pytest.raises(ValueError):
        NatProfile("xx", "pd", "pp", "203.0.113.5", 4000, 0.0, "high")
    with pytest.raises(ValueError, match="not a NAT profile"):
        NatProfile.from_json({"mapping": "ei"})


def test_a_change_is_the_behaviour_or_the_public_address() -> None:
    profile = NatProfile("ei", "pd", "pp", "203.0.113.5", 4000, 0.0, "high")
    assert profile.changed_from(None)
    assert not profile.changed_from(attrs.evolve(profile, detected_at=99.0, confidence="low"))
    assert profile.changed_from(attrs.evolve(profile, public_port=4001))
    assert profile.changed_from(attrs.evolve(profile, filtering="hd"))
    assert profile.changed_from(attrs.evolve(profile, public_ip="203.0.113.6"))


def test_a_port_change_counts_only_for_the_same_socket_behind_an_ei_mapping() -> None:
    seen = NatProfile(
        "ei", "pd", "pp", "203.0.113.5", 40000, 0.0, "high", local_address=("0.0.0.0", 5000)
    )
    assert attrs.evolve(seen, public_port=41000).changed_from(seen)  # the mapping moved
    other_socket = attrs.evolve(seen, public_port=41000, local_address=("0.0.0.0", 5001))
    assert not other_socket.changed_from(seen)
    symmetric = attrs.evolve(seen, mapping="pd")
    assert not attrs.evolve(symmetric, public_port=41000).changed_from(symmetric)


def test_the_port_mapping_round_trips_and_is_a_change() -> None:
    profile = NatProfile("pd", "pd", "rd", "203.0.113.5", 4000, 1.0, "high")
    mapped = attrs.evolve(profile, mapped=["203.0.113.5", 41000])
    assert mapped.mapped == ("203.0.113.5", 41000)
    assert NatProfile.from_json(json.loads(json.dumps(mapped.to_json()))) == mapped
    assert mapped.changed_from(profile) and profile.changed_from(mapped)
    assert not mapped.changed_from(attrs.evolve(mapped, public_port=4001))
    old_reader = {k: v for k, v in mapped.to_json().items() if k != "mapped"}
    assert NatProfile.from_json(old_reader) == profile


def test_udp_blocked_round_trips_is_a_change_and_older_readers_skip_it() -> None:
    profile = NatProfile("ei", "pd", "pp", "203.0.113.5", 4000, 1.0, "high")
    blocked = attrs.evolve(profile, udp_blocked=True)
    assert blocked.nat_type == "UDP blocked" and profile.nat_type == "port-restricted cone"
    assert blocked.changed_from(profile) and profile.changed_from(blocked)
    assert NatProfile.from_json(json.loads(json.dumps(blocked.to_json()))) == blocked
    old_reader = {k: v for k, v in blocked.to_json().items() if k != "udp_blocked"}
    assert NatProfile.from_json(old_reader) == profile
    assert NatProfile.blocked("10.0.0.2", 5.0).udp_blocked
