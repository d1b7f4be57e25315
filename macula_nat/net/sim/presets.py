"""The usual NAT types as behaviours, and a one-call way to put a host behind one.

Mapping lifetimes are 30 s, what real NATs do (Linux conntrack's unreplied UDP timeout), not
RFC 4787's 120 s minimum, so keepalive logic above is tested against the harsh case. Every preset
hairpins (RFC 4787 REQ-9); ``attrs.evolve(PRESET, hairpinning=False)`` turns it off.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

import attrs

from macula_nat.net.sim.host import SimHost
from macula_nat.net.sim.link import LinkProfile
from macula_nat.net.sim.nat_behavior import NatBehavior
from macula_nat.net.sim.nat_box import NatBox
from macula_nat.net.sim.network import Network

REAL_NAT_LIFETIME = 30.0

FULL_CONE = NatBehavior(
    mapping="ei", filtering="ei", allocation="pp", mapping_lifetime=REAL_NAT_LIFETIME
)
RESTRICTED_CONE = NatBehavior(
    mapping="ei", filtering="hd", allocation="pp", mapping_lifetime=REAL_NAT_LIFETIME
)
PORT_RESTRICTED_CONE = NatBehavior(
    mapping="ei", filtering="pd", allocation="pp", mapping_lifetime=REAL_NAT_LIFETIME
)
"""What Linux ``masquerade`` does."""
SYMMETRIC_RANDOM = NatBehavior(
    mapping="pd", filtering="pd", allocation="rd", mapping_lifetime=REAL_NAT_LIFETIME
)
SYMMETRIC_SEQUENTIAL = NatBehavior(
    mapping="pd", filtering="pd", allocation="pc", mapping_lifetime=REAL_NAT_LIFETIME
)
EIM_RANDOM_PORT = NatBehavior(
    mapping="ei", filtering="pd", allocation="rd", mapping_lifetime=REAL_NAT_LIFETIME
)
ADDRESS_DEPENDENT = NatBehavior(
    mapping="hd", filtering="pd", allocation="rd", mapping_lifetime=REAL_NAT_LIFETIME
)
"""ADM, as the lab builds it: a per-remote-IP port map in front of a random masquerade."""
CARRIER_GRADE = NatBehavior(
    mapping="ei", filtering="hd", allocation="rd", mapping_lifetime=REAL_NAT_LIFETIME
)
"""RFC 6888 asks a CGN for EIM; ADF is RFC 4787's choice when filtering must be strict."""

CGNAT_SUBNET = "100.64.0.0/10"
"""RFC 6598 shared address space, between a carrier's NAT and its customers' NATs."""


class Preset(StrEnum):
    """Where a host sits: in the open, or behind one of the usual NAT types.

    Values are those of the namespace lab's ``NatPreset`` for the same behaviour, so a test can
    run one matrix on both: ``Preset(lab_preset.value)``.
    """

    OPEN_INTERNET = "none"
    FULL_CONE = "full_cone"
    RESTRICTED_CONE = "restricted_cone"
    PORT_RESTRICTED_CONE = "port_restricted_cone"
    SYMMETRIC_RANDOM = "symmetric"
    SYMMETRIC_SEQUENTIAL = "symmetric_sequential"
    EIM_RANDOM_PORT = "eim_random_port"
    ADDRESS_DEPENDENT = "address_dependent"
    CGNAT = "cgnat"
    CGNAT_FULL_CONE = "cgnat_full_cone"
    UDP_BLOCKED = "udp_blocked"
    """A port-restricted cone whose firewall drops every datagram (``NatBox.udp_blocked``)
    and lets TCP pass: a hotel or office network. Set the box's ``udp_blocked`` to False and
    it is a port-restricted cone."""


PRESET_CHAINS: Mapping[Preset, tuple[NatBehavior, ...]] = {
    Preset.OPEN_INTERNET: (),
    Preset.FULL_CONE: (FULL_CONE,),
    Preset.RESTRICTED_CONE: (RESTRICTED_CONE,),
    Preset.PORT_RESTRICTED_CONE: (PORT_RESTRICTED_CONE,),
    Preset.SYMMETRIC_RANDOM: (SYMMETRIC_RANDOM,),
    Preset.SYMMETRIC_SEQUENTIAL: (SYMMETRIC_SEQUENTIAL,),
    Preset.EIM_RANDOM_PORT: (EIM_RANDOM_PORT,),
    Preset.ADDRESS_DEPENDENT: (ADDRESS_DEPENDENT,),
    Preset.CGNAT: (CARRIER_GRADE,),
    Preset.CGNAT_FULL_CONE: (CARRIER_GRADE, FULL_CONE),
    Preset.UDP_BLOCKED: (PORT_RESTRICTED_CONE,),
}
"""The NATs between each preset's host and the network it is added to, outermost first."""

UDP_PRESETS: tuple[Preset, ...] = tuple(p for p in Preset if p is not Preset.UDP_BLOCKED)
"""Every preset that passes UDP: all but :attr:`Preset.UDP_BLOCKED`."""


@attrs.frozen(eq=False)
class Site:
    """A host and the NAT boxes in front of it, outermost first."""

    host: SimHost
    nats: tuple[NatBox, ...]


def add_site(
    network: Network,
    preset: Preset | str,
    *,
    name: str | None = None,
    link: LinkProfile | None = None,
) -> Site:
    """A host behind ``preset``'s NATs on ``network``; ``link`` is the outermost link.

    Every NAT gets a fresh ``10.0.N.0/24`` network, except a carrier-grade one, which gets
    :data:`CGNAT_SUBNET`.
    """
    chain = PRESET_CHAINS[Preset(preset)]
    if not chain:
        return Site(network.add_host(name=name, link=link), ())
    nats: list[NatBox] = []
    outer = network
    for index, behavior in enumerate(chain):
        nat = outer.add_nat(
            behavior,
            name=f"{name}-nat{index + 1}" if name else None,
            link=link if index == 0 else None,
            subnet=CGNAT_SUBNET if behavior == CARRIER_GRADE else None,
        )
        nats.append(nat)
        outer = nat.network
    if Preset(preset) is Preset.UDP_BLOCKED:
        nats[0].udp_blocked = True
    return Site(outer.add_host(name=name), tuple(nats))
