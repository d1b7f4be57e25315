"""classify: pure, over evidence records.

Full evidence comes from replaying the probe plan against the simulator's NAT core
(`NatTable`, sans-IO), so every combination of mapping, filtering and allocation is checked
against a NAT that really behaves that way; hand-written records cover the edge cases.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence

import attrs
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from macula_nat.behavior import FilteringBehavior, MappingBehavior, PortAllocation
from macula_nat.nat.classify import (
    MAX_PORT_DELTA,
    Classification,
    Measurement,
    classify,
    contradicts,
)
from macula_nat.nat.errors import DetectionTimeout
from macula_nat.nat.evidence import (
    AllocationSample,
    BindingObservation,
    Evidence,
    FilteringObservation,
    HairpinObservation,
)
from macula_nat.nat.probe import ProbeSettings
from macula_nat.nat.profile import Confidence
from macula_nat.net import Address
from macula_nat.net.sim import NatBehavior, NatTable

PUBLIC_IP = "203.0.113.7"
LOCAL_IP = "10.0.0.2"
OPEN_IP = "203.0.113.50"

RFC: Address = ("198.51.100.10", 3478)
RFC_OTHER: Address = ("198.51.100.11", 3479)
SINGLE: Address = ("192.0.2.20", 3478)
SINGLE_SAME_IP: Address = ("192.0.2.20", 3480)
SINGLE_B: Address = ("192.0.2.30", 3478)

ALTERNATES = {RFC: RFC_OTHER}


class Model:
    """The probe plan replayed, in its order, against a NAT table (or against no NAT)."""

    def __init__(self, behavior: NatBehavior | None, seed: int) -> None:
        self._rng = random.Random(seed)
        self._table = None if behavior is None else NatTable(behavior, [PUBLIC_IP], self._rng)
        self.local_ip = OPEN_IP if behavior is None else LOCAL_IP
        self._ports: set[int] = set()

    def socket(self) -> Address:
        port = self._rng.randint(32768, 60999)
        while port in self._ports:
            port = self._rng.randint(32768, 60999)
        self._ports.add(port)
        return (self.local_ip, port)

    def send(self, source: Address, destination: Address) -> Address:
        """The mapped address the destination sees."""
        if self._table is None:
            return source
        mapped = self._table.outbound(source, destination, 0.0)
        assert mapped is not None
        return mapped

    def answered_from(self, mapped: Address, source: Address) -> Address | None:
        """``source`` if a datagram from it reaches ``mapped``, else None."""
        if self._table is None or self._table.inbound(source, mapped, 0.0) is not None:
            return source
        return None

    def hairpin(self, source: Address, destination: Address) -> bool:
        if self._table is None:
            return True
        return self._table.hairpin(source, destination, 0.0) is not None


def synthesize(
    behavior: NatBehavior | None,
    seed: int = 0,
    observers: Sequence[Address] = (RFC, SINGLE_B),
    samples: int = ProbeSettings().allocation_samples,
) -> Evidence:
    """The evidence `run_probes` would collect behind ``behavior``."""
    model = Model(behavior, seed)
    mapping_socket = model.socket()
    bindings = [
        BindingObservation(o, mapped=model.send(mapping_socket, o), other_address=ALTERNATES.get(o))
        for o in observers
    ]
    filtering = []
    for observer in observers:
        for change_ip in (True, False):
            mapped = model.send(model.socket(), observer)
            alternate = ALTERNATES.get(observer)
            if alternate is None:
                filtering.append(FilteringObservation(observer, change_ip, True, error=420))
                continue
            changed = (alternate[0] if change_ip else observer[0], alternate[1])
            answered = model.answered_from(mapped, changed)
            filtering.append(FilteringObservation(observer, change_ip, True, answered))
    anchor = observers[0]
    allocation = []
    for _ in range(samples):
        local = model.socket()
        allocation.append(AllocationSample(local[1], model.send(local, anchor)))
    first, second = model.socket(), model.socket()
    first_mapped, second_mapped = model.send(first, anchor), model.send(second, anchor)
    received = False
    for _ in range(2):  # two rounds of the exchange
        received |= model.hairpin(first, second_mapped)
        received |= model.hairpin(second, first_mapped)
    for observer, alternate in ALTERNATES.items():
        if observer in observers:
            for destination in ((alternate[0], observer[1]), alternate):
                mapped = model.send(mapping_socket, destination)
                bindings.append(BindingObservation(destination, mapped=mapped))
    return Evidence(
        observers=observers,
        local_ips=[model.local_ip],
        local_port=mapping_socket[1],
        bindings=bindings,
        filtering=filtering,
        allocation=allocation,
        hairpin=HairpinObservation(received),
    )


def expected_hairpinning(behavior: NatBehavior) -> bool | None:
    if behavior.mapping == "ei":
        return behavior.hairpinning
    if behavior.hairpinning and behavior.filtering == "ei":
        return True
    return None  # the NAT's own filtering hides whether it hairpins


def check(result: Classification, behavior: NatBehavior) -> None:
    assert (result.mapping, result.filtering, result.allocation) == (
        behavior.mapping,
        behavior.filtering,
        behavior.allocation,
    )
    delta = behavior.port_delta if behavior.allocation == "pc" else None
    assert result.port_delta == delta
    assert result.nat_present
    assert result.public_address[0] == PUBLIC_IP
    assert result.hairpinning == expected_hairpinning(behavior)


COMBINATIONS = list(itertools.product(MappingBehavior, FilteringBehavior, PortAllocation))

behaviors = st.builds(
    NatBehavior,
    mapping=st.sampled_from(MappingBehavior),
    filtering=st.sampled_from(FilteringBehavior),
    allocation=st.sampled_from(PortAllocation),
    port_delta=st.integers(-MAX_PORT_DELTA, MAX_PORT_DELTA).filter(bool),
    hairpinning=st.booleans(),
)


def wrapped(evidence: Evidence, behavior: NatBehavior) -> bool:
    """True if a ``pc`` NAT's port counter wrapped around during the samples."""
    ports = [s.mapped[1] for s in evidence.allocation if s.mapped is not None]
    steps = {b - a for a, b in itertools.pairwise(ports)}
    return behavior.allocation == "pc" and steps != {behavior.port_delta}


# -- every behaviour, full evidence -----------------------------------------------------------


@pytest.mark.parametrize(("mapping", "filtering", "allocation"), COMBINATIONS)
@pytest.mark.parametrize("hairpinning", [True, False])
def test_every_combination_is_classified_with_high_confidence(
    mapping: MappingBehavior,
    filtering: FilteringBehavior,
    allocation: PortAllocation,
    hairpinning: bool,
) -> None:
    behavior = NatBehavior(
        mapping=mapping, filtering=filtering, allocation=allocation, hairpinning=hairpinning
    )
    result = classify(synthesize(behavior, seed=1))
    check(result, behavior)
    assert result.confidence is Confidence.HIGH
    assert result.assumed == frozenset()
    assert {
        Measurement.RFC5780_MAPPING,
        Measurement.RFC5780_FILTERING,
        Measurement.MULTI_OBSERVER_MAPPING,
        Measurement.ALLOCATION,
    } <= result.measured


@given(behaviors, st.integers(0, 2**32))
def test_any_behaviour_and_seed_is_classified(behavior: NatBehavior, seed: int) -> None:
    evidence = synthesize(behavior, seed)
    assume(not wrapped(evidence, behavior))
    result = classify(evidence)
    check(result, behavior)
    assert result.confidence is Confidence.HIGH


@pytest.mark.parametrize(("mapping", "filtering", "allocation"), COMBINATIONS)
def test_rfc5780_alone_is_high_when_the_allocation_samples_are_consistent(
    mapping: MappingBehavior, filtering: FilteringBehavior, allocation: PortAllocation
) -> None:
    behavior = NatBehavior(mapping=mapping, filtering=filtering, allocation=allocation)
    result = classify(synthesize(behavior, seed=2, observers=[RFC]))
    check(result, behavior)
    assert result.confidence is Confidence.HIGH
    assert Measurement.MULTI_OBSERVER_MAPPING not in result.measured


@pytest.mark.parametrize(("mapping", "filtering", "allocation"), COMBINATIONS)
def test_rfc5780_alone_without_samples_is_medium(
    mapping: MappingBehavior, filtering: FilteringBehavior, allocation: PortAllocation
) -> None:
    behavior = NatBehavior(mapping=mapping, filtering=filtering, allocation=allocation)
    result = classify(synthesize(behavior, seed=3, observers=[RFC], samples=0))
    assert (result.mapping, result.filtering) == (mapping, filtering)
    assert result.allocation is PortAllocation.RANDOM
    assert result.assumed == {"allocation"}
    assert result.confidence is Confidence.MEDIUM


@given(behaviors, st.integers(0, 2**32))
def test_single_address_observers_measure_mapping_but_not_filtering(
    behavior: NatBehavior, seed: int
) -> None:
    evidence = synthesize(behavior, seed, observers=[SINGLE, SINGLE_B, SINGLE_SAME_IP])
    assume(not wrapped(evidence, behavior))
    result = classify(evidence)
    assert (result.mapping, result.allocation) == (behavior.mapping, behavior.allocation)
    assert result.filtering is FilteringBehavior.ADDRESS_AND_PORT_DEPENDENT
    assert result.assumed == {"filtering"}
    assert result.confidence is Confidence.MEDIUM
    assert Measurement.RFC5780_MAPPING not in result.measured


@given(behaviors, st.integers(0, 2**32))
def test_observers_on_different_ips_only_see_whether_the_mapping_varies(
    behavior: NatBehavior, seed: int
) -> None:
    result = classify(synthesize(behavior, seed, observers=[SINGLE, SINGLE_B]))
    if behavior.mapping == "ei":
        assert result.mapping is MappingBehavior.ENDPOINT_INDEPENDENT
        assert "mapping" not in result.assumed
    else:
        assert result.mapping is MappingBehavior.ADDRESS_AND_PORT_DEPENDENT
        assert "mapping" in result.assumed
    assert result.confidence is Confidence.MEDIUM


@pytest.mark.parametrize("observers", [[RFC, SINGLE_B], [SINGLE, SINGLE_B]])
def test_no_nat_is_reported_as_open(observers: list[Address]) -> None:
    result = classify(synthesize(None, seed=4, observers=observers))
    assert not result.nat_present
    assert (result.mapping, result.allocation) == ("ei", "pp")
    assert result.public_address == result.local_address
    assert result.public_address[0] == OPEN_IP
    assert result.hairpinning is None
    if RFC in observers:
        assert result.filtering is FilteringBehavior.ENDPOINT_INDEPENDENT
        assert result.confidence is Confidence.HIGH


def test_the_profile_carries_the_classification() -> None:
    behavior = NatBehavior(mapping="pd", filtering="pd", allocation="pc", port_delta=2)
    result = classify(synthesize(behavior, seed=5))
    profile = result.to_profile(detected_at=1.7e9)
    assert profile.classification == ("pd", "pd", "pc")
    assert profile.port_delta == 2
    assert profile.public_address == result.public_address
    assert profile.observers == (RFC, SINGLE_B)
    assert profile.confidence is Confidence.HIGH
    assert profile.nat_type == "symmetric"


# -- missing answers and disagreement ---------------------------------------------------------

MAPPED: Address = (PUBLIC_IP, 40000)


def evidence(**fields: object) -> Evidence:
    defaults: dict[str, object] = {
        "observers": [RFC],
        "local_ips": [LOCAL_IP],
        "local_port": 50000,
    }
    return Evidence(**(defaults | fields))  # type: ignore[arg-type]


def rfc_bindings(first: Address, second: Address | None, third: Address | None) -> list[object]:
    return [
        BindingObservation(RFC, mapped=first, other_address=RFC_OTHER),
        BindingObservation((RFC_OTHER[0], RFC[1]), mapped=second),
        BindingObservation(RFC_OTHER, mapped=third),
    ]


def filtering_results(both: Address | None, port: Address | None) -> list[FilteringObservation]:
    return [
        FilteringObservation(RFC, True, True, answered_from=both),
        FilteringObservation(RFC, False, True, answered_from=port),
    ]


def test_nothing_answered_is_a_detection_timeout() -> None:
    with pytest.raises(DetectionTimeout, match=r"198\.51\.100\.10:3478"):
        classify(evidence(bindings=[BindingObservation(RFC)], allocation=[AllocationSample(1)]))
    with pytest.raises(DetectionTimeout, match="none asked"):
        classify(evidence(observers=[]))


def test_only_allocation_samples_answered() -> None:
    result = classify(evidence(allocation=[AllocationSample(50001, MAPPED)]))
    assert result.public_address == MAPPED
    assert result.local_address == (LOCAL_IP, 50001)
    assert result.mapping is MappingBehavior.ADDRESS_AND_PORT_DEPENDENT
    assert {"mapping", "filtering", "allocation"} == result.assumed
    assert result.confidence is Confidence.LOW


def test_a_single_plain_observer_is_low_confidence() -> None:
    result = classify(
        evidence(observers=[SINGLE], bindings=[BindingObservation(SINGLE, mapped=MAPPED)])
    )
    assert result.confidence is Confidence.LOW
    assert "only one destination answered the mapping socket" in result.notes


def test_test_two_equal_to_test_one_needs_no_test_three() -> None:
    result = classify(
        evidence(
            bindings=rfc_bindings(MAPPED, MAPPED, None),
            filtering=filtering_results(RFC_OTHER, (RFC[0], RFC_OTHER[1])),
        )
    )
    assert result.mapping is MappingBehavior.ENDPOINT_INDEPENDENT
    assert result.filtering is FilteringBehavior.ENDPOINT_INDEPENDENT
    assert Measurement.RFC5780_MAPPING in result.measured
    assert result.confidence is Confidence.MEDIUM  # uncorroborated


def test_a_lost_test_three_leaves_hd_or_pd_open() -> None:
    result = classify(evidence(bindings=rfc_bindings(MAPPED, (PUBLIC_IP, 40001), None)))
    assert result.mapping is MappingBehavior.ADDRESS_AND_PORT_DEPENDENT
    assert "mapping" in result.assumed
    assert Measurement.RFC5780_MAPPING not in result.measured
    assert result.confidence is Confidence.LOW  # one observer, RFC 5780 incomplete


@pytest.mark.parametrize(
    ("other", "usable"),
    [
        (RFC_OTHER, True),
        ((RFC[0], RFC_OTHER[1]), False),  # same IP
        ((RFC_OTHER[0], RFC[1]), False),  # same port
        (("2001:db8::1", 3479), False),  # another IP version
    ],
)
def test_other_address_must_differ_in_ip_and_port(other: Address, usable: bool) -> None:
    bindings = [
        BindingObservation(RFC, mapped=MAPPED, other_address=other),
        BindingObservation((other[0], RFC[1]), mapped=MAPPED),
        BindingObservation(other, mapped=MAPPED),
    ]
    result = classify(evidence(bindings=bindings, filtering=filtering_results(None, None)))
    assert (Measurement.RFC5780_MAPPING in result.measured) == usable
    assert ("filtering" in result.assumed) == (not usable)


@pytest.mark.parametrize(
    ("both", "port", "filtering"),
    [
        (RFC_OTHER, (RFC[0], RFC_OTHER[1]), "ei"),
        (None, (RFC[0], RFC_OTHER[1]), "hd"),
        (None, None, "pd"),
    ],
)
def test_filtering_verdicts(both: Address | None, port: Address | None, filtering: str) -> None:
    result = classify(
        evidence(
            bindings=rfc_bindings(MAPPED, MAPPED, MAPPED), filtering=filtering_results(both, port)
        )
    )
    assert result.filtering == filtering
    assert "filtering" not in result.assumed


@pytest.mark.parametrize(
    "tests",
    [
        filtering_results(RFC, RFC),  # answered, but not from the changed address
        [
            FilteringObservation(RFC, True, True, error=420),
            FilteringObservation(RFC, False, True, error=420),
        ],
        filtering_results(None, None)[:1],  # the change-port test never ran
    ],
)
def test_an_observer_that_ignores_change_request_leaves_filtering_unmeasured(
    tests: list[FilteringObservation],
) -> None:
    result = classify(evidence(bindings=rfc_bindings(MAPPED, MAPPED, MAPPED), filtering=tests))
    assert result.filtering is FilteringBehavior.ADDRESS_AND_PORT_DEPENDENT
    assert "filtering" in result.assumed
    assert Measurement.RFC5780_FILTERING not in result.measured


def test_change_ip_answered_but_change_port_lost_is_a_disagreement() -> None:
    result = classify(
        evidence(
            bindings=rfc_bindings(MAPPED, MAPPED, MAPPED),
            filtering=filtering_results(RFC_OTHER, None),
        )
    )
    assert result.filtering is FilteringBehavior.ENDPOINT_INDEPENDENT
    assert result.confidence is Confidence.LOW


def test_rfc5780_observers_that_disagree_on_filtering_give_the_strictest_and_low() -> None:
    second: Address = ("192.0.2.40", 3478)
    second_other: Address = ("192.0.2.41", 3479)
    bindings = [
        BindingObservation(RFC, mapped=MAPPED, other_address=RFC_OTHER),
        BindingObservation(second, mapped=MAPPED, other_address=second_other),
        *rfc_bindings(MAPPED, MAPPED, MAPPED)[1:],
    ]
    tests = [
        *filtering_results(RFC_OTHER, (RFC[0], RFC_OTHER[1])),
        FilteringObservation(second, True, True),
        FilteringObservation(second, False, True, answered_from=(second[0], second_other[1])),
    ]
    result = classify(evidence(observers=[RFC, second], bindings=bindings, filtering=tests))
    assert result.filtering is FilteringBehavior.ADDRESS_DEPENDENT
    assert result.confidence is Confidence.LOW


def test_observers_reporting_another_public_ip_are_a_disagreement() -> None:
    bindings = [
        *rfc_bindings(MAPPED, MAPPED, MAPPED),
        BindingObservation(SINGLE_B, mapped=("203.0.113.99", 40000)),
    ]
    result = classify(
        evidence(
            observers=[RFC, SINGLE_B],
            bindings=bindings,
            filtering=filtering_results(None, None),
        )
    )
    assert result.confidence is Confidence.LOW


def test_allocation_samples_on_another_public_ip_are_a_disagreement() -> None:
    samples = [AllocationSample(50000 + i, ("203.0.113.99", 50000 + i)) for i in range(3)]
    result = classify(
        evidence(
            bindings=rfc_bindings(MAPPED, MAPPED, MAPPED),
            filtering=filtering_results(None, None),
            allocation=samples,
        )
    )
    assert result.confidence is Confidence.LOW


def test_peer_reports_corroborate_or_contradict() -> None:
    rfc_only = evidence(
        bindings=rfc_bindings(MAPPED, MAPPED, MAPPED), filtering=filtering_results(None, None)
    )
    assert classify(rfc_only).confidence is Confidence.MEDIUM
    assert classify(rfc_only.with_peer_observation(*MAPPED)).confidence is Confidence.HIGH
    other_ip = rfc_only.with_peer_observation("203.0.113.99", MAPPED[1])
    assert classify(other_ip).confidence is Confidence.LOW
    # Another port only contradicts when the mapping socket is the one peers talk to.
    other_port = rfc_only.with_peer_observation(PUBLIC_IP, 1234)
    assert classify(other_port).confidence is Confidence.HIGH
    main = attrs.evolve(other_port, main_socket=True)
    assert classify(main).confidence is Confidence.LOW


def test_contradicts_tells_the_detector_when_to_detect_again() -> None:
    fresh_socket = evidence(
        bindings=rfc_bindings(MAPPED, MAPPED, MAPPED), filtering=filtering_results(None, None)
    )
    main_socket = attrs.evolve(fresh_socket, main_socket=True)
    result = classify(main_socket)
    assert result.mapping is MappingBehavior.ENDPOINT_INDEPENDENT
    for found in (fresh_socket, main_socket):
        assert not contradicts(found, result, *MAPPED)
        assert contradicts(found, result, "203.0.113.99", MAPPED[1])
    assert contradicts(main_socket, result, PUBLIC_IP, 1234)
    assert not contradicts(fresh_socket, result, PUBLIC_IP, 1234)
    symmetric = classify(
        attrs.evolve(main_socket, bindings=rfc_bindings(MAPPED, (PUBLIC_IP, 1), (PUBLIC_IP, 2)))
    )
    assert not contradicts(main_socket, symmetric, PUBLIC_IP, 1234)


def samples_for(ports: Sequence[int | None], local: int = 30000) -> list[AllocationSample]:
    return [
        AllocationSample(local + i, None if port is None else (PUBLIC_IP, port))
        for i, port in enumerate(ports)
    ]


@pytest.mark.parametrize(
    ("ports", "allocation", "delta", "high"),
    [
        ([30000, 30001, 30002, 30003, 30004], "pp", None, True),
        ([40000, 40001, 40002, 40003, 40004, 40005, 40006], "pc", 1, True),
        ([40000, 40001, 40002, 40003, 40004], "pc", 1, False),  # 4 steps: not decisive
        ([40000, 39998, 39996, 39994], "pc", -2, False),
        ([40000, None, 40002, 40003, 40004, 40005, 40006], "pc", 1, True),  # one lost
        # Another mapping in between: one odd step, tolerated from 6 steps on.
        ([40000, 40001, 40003, 40004, 40005, 40006, 40007], "pc", 1, False),
        ([40000, 40001, 40003, 40004, 40005], "rd", None, False),
        ([40000, 40002, 40001, 40003], "rd", None, False),  # reordered: steps 2, -1, 2
        ([40000, 40000 + MAX_PORT_DELTA + 1, 40000 + 2 * (MAX_PORT_DELTA + 1)], "rd", None, False),
        ([40000, 51234, 33017, 60001], "rd", None, True),
        ([40000, 40010, 40020, 45000, 51000, 2000], "rd", None, False),  # 2 of 5 steps equal
        # Random in a 100-port pool that the sorted-gaps rule called pc (issue 15).
        ([40050, 40056, 40065, 40045, 40040], "rd", None, True),
        ([40000, 40001], "rd", None, False),  # too few to tell
    ],
)
def test_allocation_rules(
    ports: list[int | None], allocation: str, delta: int | None, high: bool
) -> None:
    result = classify(
        evidence(
            bindings=rfc_bindings(MAPPED, MAPPED, MAPPED),
            filtering=filtering_results(None, None),
            allocation=samples_for(ports),
        )
    )
    assert (result.allocation, result.port_delta) == (allocation, delta)
    assert (result.confidence is Confidence.HIGH) == high


def test_contradicting_mappings_are_a_disagreement() -> None:
    bindings = [
        BindingObservation(RFC, mapped=MAPPED),
        BindingObservation(SINGLE, mapped=MAPPED),
        BindingObservation(SINGLE_SAME_IP, mapped=(PUBLIC_IP, 40001)),
    ]
    result = classify(evidence(observers=[RFC, SINGLE, SINGLE_SAME_IP], bindings=bindings))
    assert result.mapping is MappingBehavior.ADDRESS_AND_PORT_DEPENDENT
    assert result.confidence is Confidence.LOW


def test_hairpinning_is_unknown_when_not_tried() -> None:
    result = classify(evidence(bindings=rfc_bindings(MAPPED, MAPPED, MAPPED)))
    assert result.hairpinning is None
    assert Measurement.HAIRPINNING not in result.measured


# -- arbitrary evidence -----------------------------------------------------------------------

ips = st.sampled_from([PUBLIC_IP, LOCAL_IP, RFC[0], RFC_OTHER[0], SINGLE[0], "203.0.113.99"])
ports = st.sampled_from([3478, 3479, 3480, 40000, 40001, 40002, 50000])
addresses = st.tuples(ips, ports)
maybe = st.none() | addresses
observations = st.builds(
    BindingObservation, addresses, mapped=maybe, other_address=maybe, error=st.none() | st.just(420)
)
any_evidence = st.builds(
    Evidence,
    observers=st.lists(addresses, max_size=3),
    local_ips=st.lists(ips, max_size=2),
    local_port=ports,
    main_socket=st.booleans(),
    bindings=st.lists(observations, max_size=6),
    filtering=st.lists(
        st.builds(
            FilteringObservation,
            addresses,
            st.booleans(),
            st.booleans(),
            maybe,
            st.none() | st.just(420),
        ),
        max_size=4,
    ),
    allocation=st.lists(st.builds(AllocationSample, ports, maybe), max_size=6),
    hairpin=st.none() | st.builds(HairpinObservation, st.booleans(), maybe),
    peer_observations=st.lists(addresses, max_size=2),
)


@given(any_evidence)
def test_any_evidence_gives_a_coherent_verdict_or_a_timeout(found: Evidence) -> None:
    try:
        result = classify(found)
    except DetectionTimeout:
        assert not found.answered
        return
    assert found.answered
    if result.confidence is Confidence.HIGH:
        assert {Measurement.RFC5780_MAPPING, Measurement.RFC5780_FILTERING} <= result.measured
        assert not result.assumed & {"mapping", "filtering"}
    assert (result.port_delta is not None) == (result.allocation is PortAllocation.CONTIGUITY)
    if result.port_delta is not None:
        assert 0 < abs(result.port_delta) <= MAX_PORT_DELTA
    if not result.nat_present:
        assert result.hairpinning is None
        assert result.public_address == result.local_address
    assert set(result.observers) <= set(found.observers)
    assert result.to_profile(0.0).classification == (
        result.mapping,
        result.filtering,
        result.allocation,
    )
