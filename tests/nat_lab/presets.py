"""NAT presets of the lab and the RFC 4787 behaviour each one is expected to show."""

from __future__ import annotations

import enum

import attrs

from macula_nat.behavior import FilteringBehavior, MappingBehavior, PortAllocation


@attrs.frozen
class NatClassification:
    """The RFC 4787 classification a detector should report for a site."""

    nat: bool
    mapping: MappingBehavior = attrs.field(converter=MappingBehavior)
    filtering: FilteringBehavior = attrs.field(converter=FilteringBehavior)
    allocation: PortAllocation = attrs.field(converter=PortAllocation)


class NatPreset(enum.Enum):
    """How a lab site reaches the public segment; each value names the behaviour it produces."""

    NONE = "none"
    FULL_CONE = "full_cone"
    RESTRICTED_CONE = "restricted_cone"
    PORT_RESTRICTED_CONE = "port_restricted_cone"
    SYMMETRIC = "symmetric"
    EIM_RANDOM_PORT = "eim_random_port"
    ADDRESS_DEPENDENT = "address_dependent"
    SYMMETRIC_SEQUENTIAL = "symmetric_sequential"
    CGNAT = "cgnat"
    """A carrier's NAT (RFC 6888: EIM; address-dependent filtering, random ports), the host
    on the carrier's RFC 6598 shared address space, as a phone on a mobile network is."""
    CGNAT_FULL_CONE = "cgnat_full_cone"
    """A double NAT: a home router (full cone) behind the carrier's NAT."""
    UDP_BLOCKED = "udp_blocked"
    """A port-restricted cone whose router also drops every UDP packet, forwarded or its own,
    in a table of its own (``lab_udp_block``) and lets TCP through: a hotel or office network.
    ``Router.lift_udp_block`` deletes that table; ``expected`` is the behaviour then."""

    @property
    def expected(self) -> NatClassification:
        """The classification this preset produces for a single host behind it."""
        return _EXPECTED[self]

    @property
    def layers(self) -> tuple[NatPreset, ...]:
        """The NAT routers between a host and the public segment, outermost first, each named
        by the single-router preset whose rules it runs."""
        if self is NatPreset.NONE:
            return ()
        return _LAYERS.get(self, (self,))

    @property
    def has_router(self) -> bool:
        """Whether the site has a NAT router (every preset except NONE)."""
        return self is not NatPreset.NONE


_EXPECTED: dict[NatPreset, NatClassification] = {
    NatPreset.NONE: NatClassification(nat=False, mapping="ei", filtering="ei", allocation="pp"),
    NatPreset.FULL_CONE: NatClassification(nat=True, mapping="ei", filtering="ei", allocation="pp"),
    NatPreset.RESTRICTED_CONE: NatClassification(
        nat=True, mapping="ei", filtering="hd", allocation="pp"
    ),
    NatPreset.PORT_RESTRICTED_CONE: NatClassification(
        nat=True, mapping="ei", filtering="pd", allocation="pp"
    ),
    NatPreset.SYMMETRIC: NatClassification(nat=True, mapping="pd", filtering="pd", allocation="rd"),
    NatPreset.EIM_RANDOM_PORT: NatClassification(
        nat=True, mapping="ei", filtering="pd", allocation="rd"
    ),
    NatPreset.ADDRESS_DEPENDENT: NatClassification(
        nat=True, mapping="hd", filtering="pd", allocation="rd"
    ),
    NatPreset.SYMMETRIC_SEQUENTIAL: NatClassification(
        nat=True, mapping="pd", filtering="pd", allocation="pc"
    ),
    NatPreset.CGNAT: NatClassification(nat=True, mapping="ei", filtering="hd", allocation="rd"),
    # Behind both, each NAT's rules apply in turn: the strictest mapping, filtering and
    # allocation of the two show.
    NatPreset.CGNAT_FULL_CONE: NatClassification(
        nat=True, mapping="ei", filtering="hd", allocation="rd"
    ),
    NatPreset.UDP_BLOCKED: NatClassification(
        nat=True, mapping="ei", filtering="pd", allocation="pp"
    ),
}

UDP_PRESETS: tuple[NatPreset, ...] = tuple(p for p in NatPreset if p is not NatPreset.UDP_BLOCKED)
"""Every preset that passes UDP (all but :attr:`NatPreset.UDP_BLOCKED`)."""

_LAYERS: dict[NatPreset, tuple[NatPreset, ...]] = {
    NatPreset.CGNAT_FULL_CONE: (NatPreset.CGNAT, NatPreset.FULL_CONE),
}
