"""The strategy table: every pair of the issue's NAT presets, and symmetry under swapping."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from macula_nat.behavior import FilteringBehavior, MappingBehavior, PortAllocation
from macula_nat.nat.profile import NatProfile
from macula_nat.traversal.strategy import (
    Method,
    Plan,
    PortKind,
    Side,
    choose,
    choose_path,
    port_kind,
)


def _profile(mapping: str, filtering: str, allocation: str, ip: str, **kw: object) -> NatProfile:
    return NatProfile(mapping, filtering, allocation, ip, 4000, 0.0, "high", **kw)  # type: ignore[arg-type]


PRESETS: dict[str, NatProfile] = {
    "none": _profile("ei", "ei", "pp", "198.51.100.1", nat_present=False),
    "full": _profile("ei", "ei", "pp", "198.51.100.2"),
    "restricted": _profile("ei", "hd", "pp", "198.51.100.3"),
    "port_restricted": _profile("ei", "pd", "pp", "198.51.100.4"),
    "sym_random": _profile("pd", "pd", "rd", "198.51.100.5"),
    "sym_seq": _profile("pd", "pd", "pc", "198.51.100.6", port_delta=1),
    "eim_random": _profile("ei", "pd", "rd", "198.51.100.7"),
    "cgnat_cone": _profile("ei", "hd", "rd", "100.64.0.8"),
}

# Row = local, column = remote, in PRESETS order. A cell is
# method / initiator / adopts / predict / birthday hard side, with L = local, R = remote, - = none.
EXPECTED = {
    "none": [
        "direct/-/-/-/-", "direct/-/-/-/-", "direct/R/-/-/-", "direct/R/-/-/-",
        "direct/R/L/-/-", "direct/R/L/-/-", "direct/R/-/-/-", "direct/R/-/-/-",
    ],
    "full": [
        "direct/-/-/-/-", "direct/-/-/-/-", "direct/R/-/-/-", "direct/R/-/-/-",
        "direct/R/L/-/-", "direct/R/L/-/-", "direct/R/-/-/-", "direct/R/-/-/-",
    ],
    "restricted": [
        "direct/L/-/-/-", "direct/L/-/-/-", "punch/-/-/-/-", "punch/-/-/-/-",
        "punch/-/L/-/-", "punch/-/L/-/-", "punch/-/-/-/-", "punch/-/-/-/-",
    ],
    "port_restricted": [
        "direct/L/-/-/-", "direct/L/-/-/-", "punch/-/-/-/-", "punch/-/-/-/-",
        "punch/R/L/-/R", "punch/R/L/R/-", "punch/-/-/-/-", "punch/-/-/-/-",
    ],
    "sym_random": [
        "direct/L/R/-/-", "direct/L/R/-/-", "punch/-/R/-/-", "punch/L/R/-/L",
        "relay/-/-/-/-", "relay/-/-/-/-", "punch/L/R/-/L", "punch/-/R/-/-",
    ],
    "sym_seq": [
        "direct/L/R/-/-", "direct/L/R/-/-", "punch/-/R/-/-", "punch/L/R/L/-",
        "relay/-/-/-/-", "punch/-/LR/LR/-", "punch/L/R/L/-", "punch/-/R/-/-",
    ],
    "eim_random": [
        "direct/L/-/-/-", "direct/L/-/-/-", "punch/-/-/-/-", "punch/-/-/-/-",
        "punch/R/L/-/R", "punch/R/L/R/-", "punch/-/-/-/-", "punch/-/-/-/-",
    ],
    "cgnat_cone": [
        "direct/L/-/-/-", "direct/L/-/-/-", "punch/-/-/-/-", "punch/-/-/-/-",
        "punch/-/L/-/-", "punch/-/L/-/-", "punch/-/-/-/-", "punch/-/-/-/-",
    ],
}  # fmt: skip

PAIRS = [
    (local, remote, EXPECTED[local][i]) for local in PRESETS for i, remote in enumerate(PRESETS)
]


def _pair(local: str, remote: str) -> tuple[NatProfile, NatProfile]:
    """The two profiles; a same-type pair sits behind two different NATs (another public IP)."""
    other = PRESETS[remote]
    if local == remote:
        other = attrs.evolve(other, public_ip="192.0.2.200")
    return PRESETS[local], other


def _side(side: Side | None) -> str:
    return "-" if side is None else side.name[0]


def _sides(sides: frozenset[Side]) -> str:
    return "".join(sorted(s.name[0] for s in sides)) or "-"


def _code(plan: Plan) -> str:
    return "/".join(
        [
            str(plan.method),
            _side(plan.initiator),
            _sides(plan.adopts),
            _sides(plan.predict),
            _side(plan.birthday_hard),
        ]
    )


def test_the_table_covers_every_pair() -> None:
    assert set(EXPECTED) == set(PRESETS)
    assert all(len(row) == len(PRESETS) for row in EXPECTED.values())


@pytest.mark.parametrize(("local", "remote", "expected"), PAIRS)
def test_every_preset_pair(local: str, remote: str, expected: str) -> None:
    plan = choose(*_pair(local, remote))
    assert _code(plan) == expected
    assert plan.reason
    assert not plan.lan_first


@pytest.mark.parametrize(("local", "remote", "expected"), PAIRS)
def test_without_relay_only_the_relay_cells_become_impossible(
    local: str, remote: str, expected: str
) -> None:
    with_relay = choose(*_pair(local, remote))
    plan = choose(*_pair(local, remote), allow_relay=False)
    if expected.startswith("relay"):
        assert plan.method is Method.IMPOSSIBLE
        assert not plan.feasible
        assert "not allowed" in plan.reason
    else:
        assert plan == with_relay
        assert plan.feasible


def test_the_table_is_its_own_transpose_under_swapping() -> None:
    for a in PRESETS:
        for b in PRESETS:
            x, y = _pair(a, b)
            assert choose(y, x) == choose(x, y).swapped()


def test_port_kinds_of_the_presets() -> None:
    kinds = {name: port_kind(p) for name, p in PRESETS.items()}
    assert kinds == {
        "none": PortKind.FIXED,
        "full": PortKind.FIXED,
        "restricted": PortKind.FIXED,
        "port_restricted": PortKind.FIXED,
        "sym_random": PortKind.RANDOM,
        "sym_seq": PortKind.PREDICTED,
        "eim_random": PortKind.FIXED,
        "cgnat_cone": PortKind.FIXED,
    }


def test_contiguity_without_a_measured_delta_is_treated_as_random() -> None:
    assert port_kind(_profile("pd", "pd", "pc", "198.51.100.9")) is PortKind.RANDOM


@pytest.mark.parametrize("mapping", ["hd", "pd"])
def test_preservation_beside_dependent_mapping_is_not_a_fixed_port(mapping: str) -> None:
    """The port was kept for the first destination only (one kept for all is measured as
    endpoint-independent), so a new peer meets a fallback port: birthday, not a straight send
    (the table walk showed the straight send failing on all 42 such pairs)."""
    preserving = _profile(mapping, "pd", "pp", "198.51.100.9")
    assert port_kind(preserving) is PortKind.RANDOM
    plan = choose(PRESETS["port_restricted"], preserving)
    assert plan.method is Method.PUNCH and plan.birthday


@pytest.mark.parametrize("dialer", ["restricted", "port_restricted", "sym_random", "sym_seq"])
def test_anyone_dials_a_side_with_open_filtering_whatever_its_mapping(dialer: str) -> None:
    """Its answer leaves through the mapping that admitted the dial (issue 15: a symmetric
    dialer used to be sent to the relay, yet the lab connects the pair directly)."""
    eif_symmetric = _profile("pd", "ei", "rd", "198.51.100.10")
    plan = choose(PRESETS[dialer], eif_symmetric)
    assert (plan.method, plan.initiator) == (Method.DIRECT, Side.LOCAL)
    assert Side.REMOTE in plan.adopts or port_kind(PRESETS[dialer]) is PortKind.FIXED


# --- same public IP (both behind the same NAT) -------------------------------------------------

SHARED_IP = "203.0.113.77"


@pytest.mark.parametrize("hairpinning", [None, True])
def test_same_nat_tries_lan_first_then_the_table(hairpinning: bool | None) -> None:
    a = _profile("pd", "pd", "rd", SHARED_IP, hairpinning=hairpinning)
    b = _profile("ei", "pd", "pp", SHARED_IP, hairpinning=hairpinning)
    plan = choose(a, b)
    assert plan.lan_first
    assert plan.birthday_hard is Side.LOCAL
    assert plan.reason.startswith("same public IP")


@pytest.mark.parametrize("allow_relay", [True, False])
def test_same_nat_without_hairpinning_leaves_lan_then_relay(allow_relay: bool) -> None:
    a = _profile("ei", "hd", "pp", SHARED_IP, hairpinning=False)
    b = _profile("ei", "ei", "pp", SHARED_IP)
    plan = choose(a, b, allow_relay=allow_relay)
    assert plan.lan_first
    assert plan.method is (Method.RELAY if allow_relay else Method.IMPOSSIBLE)
    assert "hairpinning" in plan.reason


def test_two_un_natted_hosts_sharing_an_ip_are_not_a_shared_nat() -> None:
    a = _profile("ei", "ei", "pp", SHARED_IP, nat_present=False, hairpinning=False)
    plan = choose(a, a)
    assert not plan.lan_first
    assert plan.method is Method.DIRECT


# --- properties over arbitrary profiles --------------------------------------------------------

profiles = st.builds(
    NatProfile,
    mapping=st.sampled_from(MappingBehavior),
    filtering=st.sampled_from(FilteringBehavior),
    allocation=st.sampled_from(PortAllocation),
    public_ip=st.sampled_from(["198.51.100.1", "198.51.100.2", "203.0.113.1"]),
    public_port=st.integers(min_value=1024, max_value=65535),
    detected_at=st.just(0.0),
    confidence=st.just("high"),
    nat_present=st.booleans(),
    hairpinning=st.none() | st.booleans(),
    port_delta=st.none() | st.integers(min_value=-3, max_value=3),
)


@given(profiles, profiles, st.booleans())
def test_swapping_swaps_roles_and_keeps_feasibility(
    a: NatProfile, b: NatProfile, allow_relay: bool
) -> None:
    ab = choose(a, b, allow_relay=allow_relay)
    ba = choose(b, a, allow_relay=allow_relay)
    assert ba == ab.swapped()
    assert ab.feasible == ba.feasible
    assert ab.swapped().swapped() == ab


@given(profiles, profiles)
def test_plans_are_consistent(a: NatProfile, b: NatProfile) -> None:
    plan = choose(a, b)
    assert plan.feasible
    without = choose(a, b, allow_relay=False)
    if plan.method is Method.RELAY:
        assert without.method is Method.IMPOSSIBLE
    else:
        assert without == plan
    # Only punches use prediction or birthday probing; only hard sides get them.
    if plan.method is not Method.PUNCH:
        assert not plan.predict and plan.birthday_hard is None
    for side in plan.predict:
        assert port_kind(a if side is Side.LOCAL else b) is PortKind.PREDICTED
    if plan.birthday_hard is not None:
        hard = a if plan.birthday_hard is Side.LOCAL else b
        assert port_kind(hard) is PortKind.RANDOM
        assert plan.initiator is plan.birthday_hard
    # A side adopts exactly when its peer's mapping is not the published one.
    if plan.method in (Method.DIRECT, Method.PUNCH):
        assert (Side.LOCAL in plan.adopts) == (port_kind(b) is not PortKind.FIXED)
        assert (Side.REMOTE in plan.adopts) == (port_kind(a) is not PortKind.FIXED)
    if plan.method is Method.RELAY and not plan.lan_first:
        # a random side, and a peer that is random too or sequential (no fixed mapping)
        kinds = {port_kind(a), port_kind(b)}
        assert PortKind.RANDOM in kinds and PortKind.FIXED not in kinds


@given(profiles, profiles)
def test_an_open_side_is_always_reached_directly(a: NatProfile, b: NatProfile) -> None:
    open_b = attrs.evolve(b, nat_present=False, filtering=FilteringBehavior.ENDPOINT_INDEPENDENT)
    plan = choose(a, open_b)
    assert plan.method is Method.DIRECT
    assert plan.initiator in (Side.LOCAL, None)


@pytest.mark.parametrize("name", PRESETS)
def test_a_port_mapped_on_request_is_dialled_directly(name: str) -> None:
    """Issue 13: a side whose router mapped its port (NAT-PMP, PCP, UPnP) accepts dials there
    like EIF, whatever its NAT: every pair with it goes direct, the other side dialling."""
    mapped = attrs.evolve(PRESETS["sym_random"], mapped=("198.51.100.5", 41000))
    plan = choose(PRESETS[name], mapped)
    assert plan.method is Method.DIRECT
    assert plan.initiator in (Side.LOCAL, None)
    assert choose(mapped, PRESETS[name]) == plan.swapped()
    if name in ("sym_random", "sym_seq", "port_restricted", "eim_random"):
        assert "mapped on request" in plan.reason


@pytest.mark.parametrize("other", list(PRESETS))
def test_a_side_whose_udp_is_blocked_always_relays_whichever_side_it_is(other: str) -> None:
    """Issue 13: no datagram reaches a UDP-blocked node, so punching is pointless."""
    blocked = NatProfile.blocked("10.0.0.2", 0.0)
    for local, remote in [(blocked, PRESETS[other]), (PRESETS[other], blocked)]:
        plan = choose(local, remote)
        assert plan.method is Method.RELAY and "UDP is blocked" in plan.reason
        assert choose(local, remote, allow_relay=False).method is Method.IMPOSSIBLE
    measured = attrs.evolve(PRESETS[other], udp_blocked=True)  # measured before the block
    assert choose(measured, PRESETS["none"]).method is Method.RELAY


# -- dual stack: a profile per IP version (issue 13) ------------------------------------------

FIREWALL6 = _profile("ei", "pd", "pp", "2001:db8:a::10", nat_present=False)
"""A host's IPv6 side behind a stateful firewall: no NAT, address- and port-dependent filter."""
OPEN6 = _profile("ei", "ei", "pp", "2001:db8:c::10", nat_present=False)
profiles = st.sampled_from(list(PRESETS.values()))
profiles6 = st.sampled_from([FIREWALL6, OPEN6, _profile("pd", "pd", "rd", "2001:db8:d::1")])


def test_two_symmetric_ipv4_nats_with_ipv6_firewalls_punch_over_ipv6() -> None:
    """The IPv4 profiles alone say relay; the IPv6 ones, classified too, say punch."""
    sym, other = _pair("sym_random", "sym_random")
    remote6 = attrs.evolve(FIREWALL6, public_ip="2001:db8:b::10")
    assert choose(sym, other).method is Method.RELAY
    plan = choose_path([sym, FIREWALL6], [other, remote6])
    assert (plan.method, plan.version, plan.initiator) == (Method.PUNCH, 6, None)


def test_an_open_ipv4_peer_is_dialled_over_ipv4_beside_firewalled_ipv6() -> None:
    """Direct beats a punch whatever the version: the dial goes to the IPv4 address."""
    remote6 = attrs.evolve(FIREWALL6, public_ip="2001:db8:b::10")
    plan = choose_path([PRESETS["port_restricted"], FIREWALL6], [PRESETS["none"], remote6])
    assert (plan.method, plan.version, plan.initiator) == (Method.DIRECT, 4, Side.LOCAL)


def test_a_version_the_socket_cannot_send_to_is_not_planned() -> None:
    sym, other = _pair("sym_random", "sym_random")
    remote6 = attrs.evolve(FIREWALL6, public_ip="2001:db8:b::10")
    plan = choose_path([sym, FIREWALL6], [other, remote6], versions=frozenset((4,)))
    assert (plan.method, plan.version) == (Method.RELAY, 4)


def test_without_a_shared_version_the_first_profiles_decide_as_before() -> None:
    plan = choose_path([FIREWALL6], [PRESETS["port_restricted"]])
    assert plan == choose(FIREWALL6, PRESETS["port_restricted"])
    with pytest.raises(ValueError, match="at least one profile"):
        choose_path([], [FIREWALL6])


@given(local=profiles, remote=profiles, local6=profiles6, remote6=profiles6, relay=st.booleans())
def test_the_path_plan_is_each_versions_plan_and_never_worse_than_either(
    local: NatProfile, remote: NatProfile, local6: NatProfile, remote6: NatProfile, relay: bool
) -> None:
    if local == remote:
        remote = attrs.evolve(remote, public_ip="203.0.113.99")
    if local6 == remote6:
        remote6 = attrs.evolve(remote6, public_ip="2001:db8:e::1")
    plan = choose_path([local, local6], [remote, remote6], allow_relay=relay)
    four = choose(local, remote, allow_relay=relay)
    six = choose(local6, remote6, allow_relay=relay)
    chosen = six if plan.version == 6 else four
    assert attrs.evolve(plan, version=None) == chosen
    order = [Method.DIRECT, Method.PUNCH, Method.RELAY, Method.IMPOSSIBLE]
    assert order.index(plan.method) <= min(order.index(four.method), order.index(six.method))
    if six.method is four.method and six.birthday == four.birthday:
        assert plan.version == 6  # IPv6 first on a tie
    # the other node plans the same path (the version both punch on)
    mirror = choose_path([remote, remote6], [local, local6], allow_relay=relay)
    assert mirror.version == plan.version and mirror.method is plan.method
