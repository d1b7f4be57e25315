"""The NAT core, without Trio: every RFC 4787 behaviour combination, and properties."""

from __future__ import annotations

import itertools
import random
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from macula_nat.behavior import FilteringBehavior, MappingBehavior, PortAllocation
from macula_nat.net.address import Address
from macula_nat.net.sim.nat_behavior import NatBehavior
from macula_nat.net.sim.nat_table import NatTable

PUBLIC = "192.0.2.1"
INSIDE: Address = ("10.0.0.2", 5000)
S1: Address = ("198.51.100.1", 3478)
S1_OTHER_PORT: Address = ("198.51.100.1", 3479)
S2: Address = ("198.51.100.2", 3478)

MAPPINGS = list(MappingBehavior)
FILTERINGS = list(FilteringBehavior)
ALLOCATIONS = list(PortAllocation)
ALL_COMBINATIONS = list(itertools.product(MAPPINGS, FILTERINGS, ALLOCATIONS))
MAPPING_FILTERINGS = list(itertools.product(MAPPINGS, FILTERINGS))


def table(
    mapping: str = "ei",
    filtering: str = "ei",
    allocation: str = "pp",
    *,
    public_ips: tuple[str, ...] = (PUBLIC,),
    seed: int = 1,
    **options: Any,
) -> NatTable:
    """A table with the given behaviour codes; ``options`` are further NatBehavior fields."""
    behavior = NatBehavior(mapping=mapping, filtering=filtering, allocation=allocation)
    return NatTable(attrs.evolve(behavior, **options), public_ips, random.Random(seed))


def out(nat: NatTable, source: Address, destination: Address, now: float = 0.0) -> Address:
    external = nat.outbound(source, destination, now)
    assert external is not None
    return external


@pytest.mark.parametrize(("mapping", "filtering", "allocation"), ALL_COMBINATIONS)
def test_mapping_reuse_follows_the_mapping_behavior(
    mapping: MappingBehavior, filtering: FilteringBehavior, allocation: PortAllocation
) -> None:
    nat = table(mapping, filtering, allocation)
    to_s1 = out(nat, INSIDE, S1)
    to_s1_other_port = out(nat, INSIDE, S1_OTHER_PORT)
    to_s2 = out(nat, INSIDE, S2)

    assert out(nat, INSIDE, S1) == to_s1
    assert {to_s1[0], to_s1_other_port[0], to_s2[0]} == {PUBLIC}
    if mapping is MappingBehavior.ENDPOINT_INDEPENDENT:
        assert to_s1 == to_s1_other_port == to_s2
        assert nat.statistics().mappings == 1
    elif mapping is MappingBehavior.ADDRESS_DEPENDENT:
        assert to_s1 == to_s1_other_port != to_s2
        assert nat.statistics().mappings == 2
    else:
        assert len({to_s1, to_s1_other_port, to_s2}) == 3
        assert nat.statistics().mappings == 3
    assert nat.statistics().outbound_translated == 4


@pytest.mark.parametrize(("mapping", "filtering", "allocation"), ALL_COMBINATIONS)
def test_filtering_admits_per_the_filtering_behavior(
    mapping: MappingBehavior, filtering: FilteringBehavior, allocation: PortAllocation
) -> None:
    nat = table(mapping, filtering, allocation)
    external = out(nat, INSIDE, S1)

    assert nat.inbound(S1, external, 1.0) == INSIDE
    same_ip = nat.inbound(S1_OTHER_PORT, external, 1.0)
    other_ip = nat.inbound(S2, external, 1.0)

    assert (same_ip == INSIDE) == (filtering is not FilteringBehavior.ADDRESS_AND_PORT_DEPENDENT)
    assert (other_ip == INSIDE) == (filtering is FilteringBehavior.ENDPOINT_INDEPENDENT)
    refused = [same_ip, other_ip].count(None)
    stats = nat.statistics()
    assert stats.filtered == refused
    assert stats.inbound_translated == 3 - refused
    assert stats.dropped == refused


@pytest.mark.parametrize(("mapping", "filtering", "allocation"), ALL_COMBINATIONS)
def test_inbound_to_an_unmapped_port_is_dropped(
    mapping: MappingBehavior, filtering: FilteringBehavior, allocation: PortAllocation
) -> None:
    nat = table(mapping, filtering, allocation)
    external = out(nat, INSIDE, S1)
    unused = (PUBLIC, external[1] + 1 if external[1] < 65535 else 1024)

    assert nat.inbound(S1, unused, 0.0) is None
    assert nat.statistics().unmapped == 1


@pytest.mark.parametrize(("mapping", "filtering"), MAPPING_FILTERINGS)
def test_port_preservation_keeps_the_port_and_falls_back_when_taken(
    mapping: MappingBehavior, filtering: FilteringBehavior
) -> None:
    nat = table(mapping, filtering, "pp")
    first = out(nat, INSIDE, S1)
    rival = out(nat, ("10.0.0.3", INSIDE[1]), S1)

    assert first == (PUBLIC, INSIDE[1])
    assert rival[1] != INSIDE[1]
    assert 1024 <= rival[1] <= 65535


def test_port_preservation_falls_back_outside_the_port_range() -> None:
    nat = table(allocation="pp", port_range=(2000, 2999))

    assert 2000 <= out(nat, ("10.0.0.2", 53), S1)[1] <= 2999


@pytest.mark.parametrize(("mapping", "filtering"), MAPPING_FILTERINGS)
@pytest.mark.parametrize("delta", [1, 2, -1, 7])
def test_port_contiguity_steps_by_the_delta(
    mapping: MappingBehavior, filtering: FilteringBehavior, delta: int
) -> None:
    nat = table(mapping, filtering, "pc", port_delta=delta)
    ports = [out(nat, ("10.0.0.2", 6000 + index), S1)[1] for index in range(20)]

    size = 65535 - 1024 + 1
    assert all((b - a) % size == delta % size for a, b in itertools.pairwise(ports))


def test_port_contiguity_skips_taken_ports() -> None:
    nat = table(allocation="pc", port_range=(1000, 1009))
    ports = [out(nat, ("10.0.0.2", 6000 + index), S1)[1] for index in range(10)]

    assert sorted(ports) == list(range(1000, 1010))
    assert nat.outbound(("10.0.0.2", 7000), S1, 0.0) is None
    assert nat.statistics().exhausted == 1


@pytest.mark.parametrize(("mapping", "filtering"), MAPPING_FILTERINGS)
def test_random_allocation_neither_preserves_nor_steps(
    mapping: MappingBehavior, filtering: FilteringBehavior
) -> None:
    nat = table(mapping, filtering, "rd")
    internals = [("10.0.0.2", 6000 + index) for index in range(20)]
    ports = [out(nat, internal, S1)[1] for internal in internals]

    preserved = sum(port == internal[1] for port, internal in zip(ports, internals, strict=True))
    deltas = {b - a for a, b in itertools.pairwise(ports)}
    assert preserved <= 1
    assert len(deltas) > 10
    assert len(set(ports)) == 20


@pytest.mark.parametrize("allocation", ALLOCATIONS)
def test_allocation_uses_every_port_then_reports_exhaustion(allocation: PortAllocation) -> None:
    nat = table("pd", "pd", allocation, port_range=(40000, 40015))
    externals = [nat.outbound(INSIDE, ("198.51.100.1", 1 + index), 0.0) for index in range(17)]

    assert externals[16] is None
    assert sorted(port for _, port in filter(None, externals)) == list(range(40000, 40016))
    assert nat.statistics().exhausted == 1


def test_public_ips_are_paired_per_internal_ip() -> None:
    nat = table("pd", "pd", "rd", public_ips=("192.0.2.1", "192.0.2.2"))
    first = {out(nat, ("10.0.0.2", port), ("198.51.100.9", port))[0] for port in range(1, 30)}
    second = {out(nat, ("10.0.0.3", port), ("198.51.100.9", port))[0] for port in range(1, 30)}

    assert first == {"192.0.2.1"}
    assert second == {"192.0.2.2"}


def test_mapping_expires_after_its_lifetime_of_idleness() -> None:
    nat = table(filtering="pd", mapping_lifetime=30.0)
    external = out(nat, INSIDE, S1, now=100.0)

    assert nat.inbound(S1, external, 129.9) == INSIDE
    assert nat.inbound(S1, external, 130.0) is None
    stats = nat.statistics()
    assert (stats.mappings, stats.mappings_expired, stats.unmapped) == (0, 1, 1)


def test_outbound_traffic_refreshes_a_mapping() -> None:
    nat = table(mapping_lifetime=30.0)
    external = out(nat, INSIDE, S1, now=0.0)
    for now in (20.0, 40.0, 60.0):
        assert out(nat, INSIDE, S1, now=now) == external

    assert nat.inbound(S1, external, 89.0) == INSIDE
    assert nat.mappings()[0].expires_at == 90.0


@pytest.mark.parametrize("inbound_refresh", [False, True])
def test_inbound_traffic_refreshes_only_when_configured(inbound_refresh: bool) -> None:
    nat = table(mapping_lifetime=30.0, inbound_refresh=inbound_refresh)
    external = out(nat, INSIDE, S1, now=0.0)
    assert nat.inbound(S1, external, 20.0) == INSIDE

    alive = nat.inbound(S1, external, 40.0) == INSIDE
    assert alive is inbound_refresh


def test_filtered_inbound_never_refreshes() -> None:
    nat = table(filtering="pd", mapping_lifetime=30.0, inbound_refresh=True)
    external = out(nat, INSIDE, S1, now=0.0)
    assert nat.inbound(S2, external, 20.0) is None

    assert nat.inbound(S1, external, 30.0) is None
    assert nat.statistics().unmapped == 1


def test_expired_ports_are_free_again() -> None:
    nat = table(allocation="rd", port_range=(5000, 5000), mapping_lifetime=10.0)
    assert out(nat, ("10.0.0.2", 1), S1, now=0.0) == (PUBLIC, 5000)
    assert nat.outbound(("10.0.0.3", 1), S1, 5.0) is None

    assert out(nat, ("10.0.0.3", 1), S1, now=10.0) == (PUBLIC, 5000)
    assert nat.statistics().mappings_expired == 1


def test_time_must_not_go_backwards() -> None:
    nat = table()
    out(nat, INSIDE, S1, now=5.0)

    with pytest.raises(ValueError, match="backwards"):
        nat.outbound(INSIDE, S1, 4.0)


def test_hairpin_delivers_from_the_senders_external_address() -> None:
    nat = table("ei", "ei", "pp")
    alice, bob = ("10.0.0.2", 4000), ("10.0.0.3", 5000)
    bob_external = out(nat, bob, S1)

    routed = nat.hairpin(alice, bob_external, 1.0)

    assert routed == ((PUBLIC, 4000), bob)
    assert nat.statistics().hairpinned == 1


def test_hairpin_applies_the_destination_mappings_filtering() -> None:
    nat = table("ei", "pd", "pp")
    alice, bob = ("10.0.0.2", 4000), ("10.0.0.3", 5000)
    bob_external = out(nat, bob, S1)
    assert nat.hairpin(alice, bob_external, 1.0) is None
    alice_external = out(nat, alice, S1, now=1.0)

    assert nat.hairpin(bob, alice_external, 2.0) == (bob_external, alice)
    assert nat.hairpin(alice, bob_external, 3.0) == (alice_external, bob)
    assert nat.statistics().filtered == 1


def test_hairpin_refused_when_off() -> None:
    nat = table(hairpinning=False)
    bob_external = out(nat, ("10.0.0.3", 5000), S1)

    assert nat.hairpin(INSIDE, bob_external, 1.0) is None
    assert nat.statistics().hairpin_refused == 1
    assert nat.statistics().mappings == 1


@pytest.mark.parametrize("mapping", ["hd", "pd"])
def test_an_answer_to_an_admitted_datagram_leaves_through_the_mapping_that_admitted_it(
    mapping: str,
) -> None:
    """Connection tracking: endpoint-dependent mapping would give S2 a mapping of its own,
    but S2's datagram arrived on the mapping toward S1, so the answer is part of that flow."""
    nat = table(mapping, "ei", "rd")
    toward_s1 = out(nat, INSIDE, S1)
    assert nat.inbound(S2, toward_s1, 0.0) == INSIDE
    assert out(nat, INSIDE, S2) == toward_s1
    assert nat.statistics().mappings == 1


def test_mapping_snapshot_names_the_remote_it_is_bound_to() -> None:
    nat = table("pd", "pd", "pp", mapping_lifetime=30.0)
    out(nat, INSIDE, S1, now=3.0)

    (mapping,) = nat.mappings()
    assert (mapping.internal, mapping.remote_ip, mapping.remote_port) == (INSIDE, *S1)
    assert mapping.permissions == frozenset({S1})
    assert mapping.expires_at == 33.0


@pytest.mark.parametrize(
    "options",
    [
        {"mapping": "xx"},
        {"allocation": "sequential"},
        {"port_delta": 0},
        {"mapping_lifetime": 0.0},
        {"port_range": (0, 10)},
        {"port_range": (2000, 1000)},
    ],
)
def test_behavior_rejects_nonsense(options: dict[str, object]) -> None:
    values: dict[str, object] = {"mapping": "ei", "filtering": "ei", "allocation": "pp"}
    with pytest.raises(ValueError):
        NatBehavior(**(values | options))  # type: ignore[arg-type]


def test_a_table_needs_a_public_ip() -> None:
    with pytest.raises(ValueError):
        NatTable(NatBehavior(mapping="ei", filtering="ei", allocation="pp"), (), random.Random())


# Properties over random traffic. The reference model is built only from what ``outbound``
# returned, never from the table's internals.

internal_endpoints = st.sampled_from([("10.0.0.2", 4000), ("10.0.0.2", 4001), ("10.0.0.3", 4000)])
remote_endpoints = st.sampled_from(
    [("198.51.100.1", 3478), ("198.51.100.1", 3479), ("198.51.100.2", 3478)]
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("out"), internal_endpoints, remote_endpoints),
        st.tuples(st.just("in"), remote_endpoints, st.integers(0, 40)),
    ),
    max_size=60,
)
behaviors = st.builds(
    NatBehavior,
    mapping=st.sampled_from(MAPPINGS),
    filtering=st.sampled_from(FILTERINGS),
    allocation=st.sampled_from(ALLOCATIONS),
    port_delta=st.sampled_from([1, 2, -3]),
    port_range=st.sampled_from([(1024, 65535), (20000, 20005), (3000, 3000)]),
)


def _key(behavior: NatBehavior, internal: Address, remote: Address) -> tuple[object, ...]:
    if behavior.mapping is MappingBehavior.ENDPOINT_INDEPENDENT:
        return (internal,)
    if behavior.mapping is MappingBehavior.ADDRESS_DEPENDENT:
        return internal, remote[0]
    return internal, remote


@settings(max_examples=300, deadline=None)
@given(behavior=behaviors, ops=operations, seed=st.integers(0, 2**32))
def test_translation_matches_a_model_of_rfc_4787(
    behavior: NatBehavior, ops: list[tuple[str, Address, object]], seed: int
) -> None:
    nat = NatTable(behavior, (PUBLIC,), random.Random(seed))
    external_of: dict[tuple[object, ...], Address] = {}
    owner_of: dict[Address, Address] = {}
    permissions: dict[Address, set[Address]] = {}
    key_of: dict[Address, tuple[object, ...]] = {}
    sessions: dict[tuple[Address, Address], Address] = {}  # opened by admitted inbound
    seen_externals: list[Address] = []
    nones = refused = 0
    for op in ops:
        if op[0] == "out":
            _, internal, remote = op
            assert isinstance(remote, tuple)
            external = nat.outbound(internal, remote, 0.0)
            session = sessions.get((internal, remote))
            if session is not None:  # an answer leaves through the mapping that admitted it
                assert external == session
                permissions[session].add(remote)
                continue
            key = _key(behavior, internal, remote)
            if external is None:
                nones += 1
                assert key not in external_of
                continue
            assert external_of.setdefault(key, external) == external
            assert owner_of.setdefault(external, internal) == internal
            key_of[external] = key
            assert external[0] == PUBLIC
            assert behavior.port_range[0] <= external[1] <= behavior.port_range[1]
            permissions.setdefault(external, set()).add(remote)
            if external not in seen_externals:
                seen_externals.append(external)
        else:
            _, remote, index = op
            assert isinstance(index, int)
            if not seen_externals:
                continue
            external = seen_externals[index % len(seen_externals)]
            allowed = permissions[external]
            admitted = {
                FilteringBehavior.ENDPOINT_INDEPENDENT: True,
                FilteringBehavior.ADDRESS_DEPENDENT: remote[0] in {ip for ip, _ in allowed},
                FilteringBehavior.ADDRESS_AND_PORT_DEPENDENT: remote in allowed,
            }[behavior.filtering]
            result = nat.inbound(remote, external, 0.0)
            assert result == (owner_of[external] if admitted else None)
            refused += not admitted
            owner = owner_of[external]
            if admitted and key_of[external] != _key(behavior, owner, remote):
                sessions[(owner, remote)] = external
    assert len(set(external_of.values())) == len(external_of)
    stats = nat.statistics()
    assert stats.mappings == stats.mappings_created == len(external_of)
    assert stats.exhausted == nones
    assert stats.filtered == refused


@settings(max_examples=200, deadline=None)
@given(
    lifetime=st.integers(1, 300),
    gaps=st.lists(st.integers(0, 400), min_size=1, max_size=10),
)
def test_a_mapping_lives_exactly_while_outbound_traffic_keeps_coming(
    lifetime: int, gaps: list[int]
) -> None:
    """Whole seconds, so that the gap the table computes is exactly the gap drawn."""
    nat = table("ei", "pd", "pp", mapping_lifetime=lifetime)
    now = 0.0
    out(nat, INSIDE, S1, now=now)
    for gap in gaps:
        now += gap
        expired_before = nat.statistics().mappings_expired
        out(nat, INSIDE, S1, now=now)
        expired = nat.statistics().mappings_expired - expired_before
        assert expired == (1 if gap >= lifetime else 0)
    assert nat.statistics().mappings == 1


@pytest.mark.parametrize("allocation", ["pp", "pc", "rd"])
def test_a_rebinding_gives_the_same_inside_endpoint_a_new_port(allocation: str) -> None:
    nat = table(filtering="pd", allocation=allocation)
    before = out(nat, INSIDE, S1, now=0.0)

    assert nat.rebind() == 1
    assert nat.inbound(S1, before, 1.0) is None  # the old mapping is gone
    after = out(nat, INSIDE, S1, now=2.0)
    assert after != before and after[0] == before[0]
    assert nat.inbound(S1, after, 3.0) == INSIDE
