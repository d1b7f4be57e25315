"""From probe evidence to a NAT classification: a pure function, no I/O and no clock.

Rules, in RFC 4787 terms (see ``ARCHITECTURE.md`` section 4):

**NAT present** unless the mapping socket's public address is its own local address.

**Mapping** compares the mapped addresses the mapping socket got from different destinations
(RFC 5780 tests I, II and III are three such destinations; several observers are more). Two
destinations on the same IP with different ports that see different mappings: ``pd``. Else,
destinations on different IPs that see different mappings: ``hd`` when same-IP pairs exist
(and agreed), otherwise ``pd`` assumed (Tailscale's "MappingVariesByDestIP": hd or pd, the
harder one assumed). Else, different IPs that agree: ``ei``. Only same-IP pairs, agreeing:
``hd`` assumed (ei or hd). One destination only: ``pd`` assumed. Without a NAT: ``ei``.

**Filtering** (RFC 5780 section 4.4), per observer whose OTHER-ADDRESS differs from it in IP and
port: the change-IP-and-port test answered from OTHER-ADDRESS: ``ei``; else the change-port test
answered from (observer IP, other port): ``hd``; neither: ``pd``. A test answered from anywhere
else, or refused with an error, is inconclusive (a server that ignores CHANGE-REQUEST). Observers
that disagree give the strictest verdict. No conclusive test: ``pd`` assumed.

**Allocation**, from the allocation samples' mapped ports in send order (each sample a fresh
socket's first mapping), by :func:`macula_nat.nat.allocation.decide_allocation`: every port
equal to its local port: ``pp``; the steps between consecutive samples all equal (one odd step
tolerated from 7 samples on) and at most `MAX_PORT_DELTA`: ``pc`` with that step as
``port_delta``; otherwise ``rd`` (assumed with fewer than `MIN_ALLOCATION_SAMPLES` answered).
Without a NAT: ``pp``. That module states how often random allocation passes for ``pc``.

**Hairpinning**: a probe arrived: True. None arrived under measured ``ei`` mapping: False.
Otherwise None: no NAT, or ``hd``/``pd`` mapping, where the probe leaves by a new mapping that
the NAT's own filtering may drop, hairpinning or not.

**Confidence** (`macula_nat.nat.profile.Confidence`):

- *low*: any disagreement (observers or peers report different public IPs, or a different port
  under ``ei`` mapping; RFC 5780 observers disagree on filtering; a filtering observer answered
  change-IP-and-port but not change-port; mappings that contradict each other; allocation
  samples on another public IP), or fewer than two destinations answered the mapping socket,
  or a single independent observer answered without completing RFC 5780's mapping tests.
- *high*: not low, full RFC 5780 ran (mapping tests I-III as needed and a conclusive filtering
  verdict), and it is corroborated: two or more independent observers agree on the public
  address (IP, and port under ``ei`` mapping), peer reports counting as one; or the allocation
  samples are consistent: at least `MIN_ALLOCATION_SAMPLES` answered, all on the public IP,
  with a decisive verdict (:mod:`macula_nat.nat.allocation`: wrong less than 1 time in 10,000).
- *medium*: the rest, i.e. one kind of evidence: RFC 5780 uncorroborated, or several
  single-address observers compared.

Independent observers are the configured observers that answered, merged when they share an IP
(an RFC 5780 server's alternate IP belongs to it).
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterable, Sequence

import attrs

from macula_nat.behavior import FilteringBehavior, MappingBehavior, PortAllocation
from macula_nat.nat.allocation import MAX_PORT_DELTA, MIN_STEPS, decide_allocation
from macula_nat.nat.errors import DetectionTimeout
from macula_nat.nat.evidence import BindingObservation, Evidence, FilteringObservation
from macula_nat.nat.profile import Confidence, NatProfile
from macula_nat.net.address import Address, normalise_address

__all__ = [
    "MAX_PORT_DELTA",
    "MIN_ALLOCATION_SAMPLES",
    "Classification",
    "Measurement",
    "classify",
    "contradicts",
]

MIN_ALLOCATION_SAMPLES = MIN_STEPS + 1
"""Answered samples needed to tell ``pc`` from ``rd`` (:mod:`macula_nat.nat.allocation`)."""

_STRICTNESS = {
    FilteringBehavior.ENDPOINT_INDEPENDENT: 0,
    FilteringBehavior.ADDRESS_DEPENDENT: 1,
    FilteringBehavior.ADDRESS_AND_PORT_DEPENDENT: 2,
}


class Measurement(enum.StrEnum):
    """A kind of test that ran to completion and so backs the classification."""

    RFC5780_MAPPING = "rfc5780_mapping"
    RFC5780_FILTERING = "rfc5780_filtering"
    MULTI_OBSERVER_MAPPING = "multi_observer_mapping"
    ALLOCATION = "allocation"
    HAIRPINNING = "hairpinning"


@attrs.frozen
class Classification:
    """The verdict on one body of evidence; `to_profile` turns it into a `NatProfile`."""

    mapping: MappingBehavior
    filtering: FilteringBehavior
    allocation: PortAllocation
    port_delta: int | None
    nat_present: bool
    public_address: Address
    local_address: Address | None
    hairpinning: bool | None
    confidence: Confidence
    measured: frozenset[Measurement]
    assumed: frozenset[str]
    """Which of "mapping", "filtering", "allocation" are conservative guesses, not measured."""
    observers: tuple[Address, ...]
    """The configured observers that answered the mapping socket."""
    notes: tuple[str, ...]
    """Why the confidence is what it is, and what could not be measured."""

    def to_profile(self, detected_at: float) -> NatProfile:
        """The `NatProfile` of this verdict; ``detected_at`` is a UNIX time."""
        return NatProfile(
            mapping=self.mapping,
            filtering=self.filtering,
            allocation=self.allocation,
            public_ip=self.public_address[0],
            public_port=self.public_address[1],
            detected_at=detected_at,
            confidence=self.confidence,
            nat_present=self.nat_present,
            local_address=self.local_address,
            hairpinning=self.hairpinning,
            port_delta=self.port_delta,
            observers=self.observers,
        )


@attrs.frozen
class _Verdict:
    """One behaviour's verdict and what backs it."""

    value: str
    assumed: bool = False
    decisive: bool = False
    delta: int | None = None


def classify(evidence: Evidence) -> Classification:
    """Classify `evidence` by the rules of this module's docstring.

    Raises `DetectionTimeout` when nothing in it was answered.
    """
    if not evidence.answered:
        raise DetectionTimeout(
            f"no STUN observer answered: {_show(evidence.observers) or 'none asked'}"
        )
    notes: list[str] = []
    disagreements: list[str] = []
    answered = [b for b in evidence.bindings if b.answered]
    public, local_port = _public_address(evidence, answered)
    local_ip = next((ip for ip in evidence.local_ips if (ip, local_port) == public), None)
    nat_present = local_ip is None
    local_ips = evidence.local_ips
    local_address = (local_ip or local_ips[0], local_port) if local_ips else None

    rfc5780 = [b for b in _observer_answers(evidence) if b.alternate is not None]
    mapping_complete = any(_mapping_tests_complete(b, answered) for b in rfc5780)
    mapping = _mapping(answered, nat_present, disagreements)
    filtering = _filtering(evidence.filtering, rfc5780, disagreements)
    allocation = _allocation(evidence, public[0], nat_present, disagreements)
    hairpinning = _hairpinning(evidence, nat_present, mapping)

    groups = _independent_groups(_observer_answers(evidence))
    agreeing = _agreeing_sources(evidence, public, mapping, disagreements)
    destinations = {b.destination for b in answered}

    measured: set[Measurement] = set()
    if mapping_complete:
        measured.add(Measurement.RFC5780_MAPPING)
    if len(groups) >= 2:
        measured.add(Measurement.MULTI_OBSERVER_MAPPING)
    if not filtering.assumed:
        measured.add(Measurement.RFC5780_FILTERING)
    if not allocation.assumed:
        measured.add(Measurement.ALLOCATION)
    if hairpinning is not None:
        measured.add(Measurement.HAIRPINNING)
    verdicts = {"mapping": mapping, "filtering": filtering, "allocation": allocation}
    assumed = frozenset(name for name, verdict in verdicts.items() if verdict.assumed)
    if not rfc5780:
        notes.append("no observer reported a usable OTHER-ADDRESS: no RFC 5780 tests")
    if filtering.assumed:
        notes.append("filtering not measured: pd assumed")
    if mapping.assumed:
        notes.append(f"mapping only partly measured: {mapping.value} assumed")

    full_rfc5780 = mapping_complete and not filtering.assumed
    if disagreements:
        confidence = Confidence.LOW
        notes.extend(disagreements)
    elif len(destinations) < 2:
        confidence = Confidence.LOW
        notes.append("only one destination answered the mapping socket")
    elif len(groups) <= 1 and not mapping_complete:
        confidence = Confidence.LOW
        notes.append("a single observer and no complete RFC 5780 test")
    elif full_rfc5780 and (agreeing >= 2 or allocation.decisive):
        confidence = Confidence.HIGH
    else:
        confidence = Confidence.MEDIUM
        if full_rfc5780:
            notes.append("RFC 5780 tests not corroborated by a second observer or allocation")
    return Classification(
        mapping=MappingBehavior(mapping.value),
        filtering=FilteringBehavior(filtering.value),
        allocation=PortAllocation(allocation.value),
        port_delta=allocation.delta,
        nat_present=nat_present,
        public_address=public,
        local_address=local_address,
        hairpinning=hairpinning,
        confidence=confidence,
        measured=frozenset(measured),
        assumed=assumed,
        observers=tuple(b.destination for b in _observer_answers(evidence)),
        notes=tuple(notes),
    )


def _show(addresses: Iterable[Address]) -> str:
    return ", ".join(f"{ip}:{port}" for ip, port in addresses)


def _public_address(
    evidence: Evidence, answered: Sequence[BindingObservation]
) -> tuple[Address, int]:
    """The public address and local port of the mapping socket, else of the first sample."""
    if answered:
        mapped = answered[0].mapped
        assert mapped is not None
        return mapped, evidence.local_port
    sample = next(s for s in evidence.allocation if s.mapped is not None)
    assert sample.mapped is not None
    return sample.mapped, sample.local_port


def _observer_answers(evidence: Evidence) -> list[BindingObservation]:
    """The first answered plain Binding to each configured observer, in observer order."""
    found: list[BindingObservation] = []
    for observer in evidence.observers:
        answer = next(
            (b for b in evidence.bindings if b.destination == observer and b.answered), None
        )
        if answer is not None:
            found.append(answer)
    return found


def _answer_to(answered: Sequence[BindingObservation], destination: Address) -> Address | None:
    return next((b.mapped for b in answered if b.destination == destination), None)


def _mapping_tests_complete(
    test_one: BindingObservation, answered: Sequence[BindingObservation]
) -> bool:
    """RFC 5780 tests I, II and, when I and II differ, III answered for one observer."""
    assert test_one.alternate is not None
    other_ip, other_port = test_one.alternate
    second = _answer_to(answered, (other_ip, test_one.destination[1]))
    if second is None:
        return False
    return second == test_one.mapped or _answer_to(answered, (other_ip, other_port)) is not None


def _mapping(
    answered: Sequence[BindingObservation], nat_present: bool, disagreements: list[str]
) -> _Verdict:
    pairs = [
        (a, b) for a, b in itertools.combinations(answered, 2) if a.destination != b.destination
    ]
    same_ip = [(a, b) for a, b in pairs if a.destination[0] == b.destination[0]]
    other_ip = [(a, b) for a, b in pairs if a.destination[0] != b.destination[0]]
    varies_same_ip = any(a.mapped != b.mapped for a, b in same_ip)
    varies_other_ip = any(a.mapped != b.mapped for a, b in other_ip)
    equal_other_ip = any(a.mapped == b.mapped for a, b in other_ip)
    if equal_other_ip and (varies_same_ip or varies_other_ip):
        disagreements.append("some destinations share a mapping that others do not")
    if not nat_present:
        if varies_same_ip or varies_other_ip:
            disagreements.append("no NAT, yet destinations saw different addresses")
        return _Verdict(MappingBehavior.ENDPOINT_INDEPENDENT)
    if varies_same_ip:
        return _Verdict(MappingBehavior.ADDRESS_AND_PORT_DEPENDENT)
    if varies_other_ip:
        if same_ip:
            return _Verdict(MappingBehavior.ADDRESS_DEPENDENT)
        return _Verdict(MappingBehavior.ADDRESS_AND_PORT_DEPENDENT, assumed=True)
    if equal_other_ip:
        return _Verdict(MappingBehavior.ENDPOINT_INDEPENDENT)
    if same_ip:
        return _Verdict(MappingBehavior.ADDRESS_DEPENDENT, assumed=True)
    return _Verdict(MappingBehavior.ADDRESS_AND_PORT_DEPENDENT, assumed=True)


def _filtering(
    observations: Sequence[FilteringObservation],
    rfc5780: Sequence[BindingObservation],
    disagreements: list[str],
) -> _Verdict:
    verdicts: list[FilteringBehavior] = []
    for test_one in rfc5780:
        verdict = _observer_filtering(observations, test_one, disagreements)
        if verdict is not None:
            verdicts.append(verdict)
    if not verdicts:
        return _Verdict(FilteringBehavior.ADDRESS_AND_PORT_DEPENDENT, assumed=True)
    if len(set(verdicts)) > 1:
        disagreements.append(f"observers disagree on filtering: {sorted(set(verdicts))}")
    return _Verdict(max(verdicts, key=_STRICTNESS.__getitem__))


def _observer_filtering(
    observations: Sequence[FilteringObservation],
    test_one: BindingObservation,
    disagreements: list[str],
) -> FilteringBehavior | None:
    """One RFC 5780 observer's filtering verdict, or None if its tests are inconclusive."""
    observer = test_one.destination
    assert test_one.alternate is not None
    other_ip, other_port = test_one.alternate
    results: dict[tuple[bool, bool], bool] = {}
    for change, expected in (
        ((True, True), (other_ip, other_port)),
        ((False, True), (observer[0], other_port)),
    ):
        tests = [
            o
            for o in observations
            if o.observer == observer and (o.change_ip, o.change_port) == change
        ]
        if not tests:
            return None
        for test in tests:
            if test.error is not None or (
                test.answered_from is not None and test.answered_from != expected
            ):
                return None
        results[change] = any(test.answered_from is not None for test in tests)
    both, port_only = results[(True, True)], results[(False, True)]
    if both:
        if not port_only:
            disagreements.append(
                f"{_show([observer])} answered change-IP-and-port but not change-port"
            )
        return FilteringBehavior.ENDPOINT_INDEPENDENT
    if port_only:
        return FilteringBehavior.ADDRESS_DEPENDENT
    return FilteringBehavior.ADDRESS_AND_PORT_DEPENDENT


def _allocation(
    evidence: Evidence, public_ip: str, nat_present: bool, disagreements: list[str]
) -> _Verdict:
    samples = [s for s in evidence.allocation if s.mapped is not None]
    if any(s.mapped[0] != public_ip for s in samples if s.mapped is not None):
        disagreements.append("allocation samples came out on another public IP")
    if not nat_present:
        return _Verdict(PortAllocation.PRESERVATION, decisive=len(samples) > MIN_STEPS)
    verdict = decide_allocation(
        [(s.local_port, s.mapped[1] if s.mapped is not None else None) for s in evidence.allocation]
    )
    if verdict.allocation == PortAllocation.RANDOM and verdict.steps < MIN_STEPS:
        return _Verdict(PortAllocation.RANDOM, assumed=True)
    return _Verdict(verdict.allocation, decisive=verdict.decisive, delta=verdict.delta)


def _hairpinning(evidence: Evidence, nat_present: bool, mapping: _Verdict) -> bool | None:
    if evidence.hairpin is None or not nat_present:
        return None
    if evidence.hairpin.received:
        return True
    if mapping.value == MappingBehavior.ENDPOINT_INDEPENDENT and not mapping.assumed:
        return False
    return None


def _independent_groups(answers: Sequence[BindingObservation]) -> list[set[str]]:
    """Observers merged into groups that share an IP (their own or their OTHER-ADDRESS)."""
    groups: list[set[str]] = []
    for answer in answers:
        ips = {answer.destination[0]}
        if answer.other_address is not None:
            ips.add(answer.other_address[0])
        joined = [group for group in groups if group & ips]
        for group in joined:
            groups.remove(group)
            ips |= group
        groups.append(ips)
    return groups


def _agreeing_sources(
    evidence: Evidence, public: Address, mapping: _Verdict, disagreements: list[str]
) -> int:
    """Independent observers (peer reports counting as one) that agree on the public address."""
    compare_port = mapping.value == MappingBehavior.ENDPOINT_INDEPENDENT

    def agrees(address: Address) -> bool:
        return address[0] == public[0] and (not compare_port or address[1] == public[1])

    agreeing = 0
    for group in _independent_groups(_observer_answers(evidence)):
        mapped = [
            b.mapped
            for b in _observer_answers(evidence)
            if b.destination[0] in group and b.mapped is not None
        ]
        if all(agrees(address) for address in mapped):
            agreeing += 1
        else:
            disagreements.append(f"observers {sorted(group)} report another public address")
    peers = evidence.peer_observations
    for reported in peers:
        if _contradicts(reported, public, compare_port and evidence.main_socket):
            disagreements.append(f"a peer reports {_show([reported])}, not {_show([public])}")
            return agreeing
    return agreeing + (1 if peers else 0)


def _contradicts(reported: Address, public: Address, compare_port: bool) -> bool:
    return reported[0] != public[0] or (compare_port and reported[1] != public[1])


def contradicts(evidence: Evidence, result: Classification, ip: str, port: int) -> bool:
    """True if a peer's report of this node's public address contradicts ``result``.

    Another public IP always does. Another port does only under ``ei`` mapping and when the
    mapping tests ran on the node's own socket (``evidence.main_socket``), the one peers see:
    under ``hd``/``pd`` mapping each peer sees a port of its own. A contradiction is evidence
    that the mapping changed: time for a fresh detection.
    """
    reported = normalise_address((ip, port))
    compare_port = evidence.main_socket and result.mapping is MappingBehavior.ENDPOINT_INDEPENDENT
    return _contradicts(reported, result.public_address, compare_port)
