"""nftables rulesets that turn a Linux router namespace into each NAT preset.

Every router gets the same stateful firewall (it drops unsolicited packets addressed to itself
and forwards inbound traffic only on conntrack state or a deliberate DNAT) plus a ``lab_nat``
table specific to its preset. Linux SNAT keeps an existing source mapping unless told to pick
ports at random, so address- or port-dependent mapping needs ``fully-random`` or a map of our own.
"""

from __future__ import annotations

import attrs

from tests.nat_lab.presets import NatPreset

NAT_TABLE = "lab_nat"
"""Name of the per-preset table; :func:`nat_flush_script` empties its dynamic maps."""

MAP_TIMEOUT_S = 120
"""Lifetime of a learned mapping in the dynamic maps (refreshed by outbound traffic)."""

SEQUENTIAL_PORT_BASE = 20000
SEQUENTIAL_PORT_SPAN = 1024
"""Sequential allocation hands out BASE, BASE+1, ... and wraps after SPAN new flows."""

_FILTER = """\
table inet lab_filter {{
  chain input {{
    type filter hook input priority filter; policy drop;
    iifname "lo" accept
    ct state established,related accept
  }}
  chain forward {{
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname "{lan}" oifname "{wan}" accept
    iifname "{wan}" oifname "{lan}" ct status dnat accept
  }}
}}
"""

_TABLE_HEAD = "table ip " + NAT_TABLE + " {\n"

_DYN = f"flags dynamic,timeout; timeout {MAP_TIMEOUT_S}s;"


@attrs.frozen
class _Rules:
    """Parts of a ``lab_nat`` table: map/set declarations and the rules of each chain."""

    maps: str = ""
    pre: str = ""
    post: str = ""
    track: str = ""

    def __add__(self, other: _Rules) -> _Rules:
        return _Rules(
            *(a + b for a, b in zip(attrs.astuple(self), attrs.astuple(other), strict=True))
        )

    def table(self) -> str:
        chains = [
            ("pre", "type nat hook prerouting priority dstnat", self.pre),
            ("post", "type nat hook postrouting priority srcnat", self.post),
            ("track", "type filter hook postrouting priority srcnat + 10", self.track),
        ]
        return (
            _TABLE_HEAD
            + self.maps
            + "".join(
                f"  chain {name} {{\n    {hook}; policy accept;\n{rules}  }}\n"
                for name, hook, rules in chains
                if rules
            )
            + "}\n"
        )


def _inbound(wan: str, *, restricted: bool) -> _Rules:
    """Unsolicited packets to a mapped port forwarded inside, through a reverse map (mapped port
    -> inside address and port) filled after SNAT from the conntrack reply tuple; restricted,
    only from remote IPs the mapped port has sent to."""
    allow_match = "udp dport . ip saddr @r_allow " if restricted else "udp dport @f_rev "
    rules = _Rules(
        maps=f"  map f_rev {{ type inet_service : ipv4_addr . inet_service; {_DYN} }}\n",
        pre=f'    iifname "{wan}" meta l4proto udp {allow_match}dnat ip to udp dport map @f_rev\n',
        track=(
            f'    oifname "{wan}" meta l4proto udp ct direction original '
            "update @f_rev { ct reply proto-dst : ct original ip saddr . ct original proto-src }\n"
            f'    oifname "{wan}" meta l4proto udp ct direction reply '
            "update @f_rev { ct original proto-dst : ct reply ip saddr . ct reply proto-src }\n"
        ),
    )
    if not restricted:
        return rules
    return rules + _Rules(
        maps=f"  set r_allow {{ type inet_service . ipv4_addr; {_DYN} }}\n",
        track=(
            f'    oifname "{wan}" meta l4proto udp ct direction original '
            "update @r_allow { ct reply proto-dst . ip daddr }\n"
            f'    oifname "{wan}" meta l4proto udp ct direction reply '
            "update @r_allow { ct original proto-dst . ip daddr }\n"
        ),
    )


def _learned(wan: str, wan_ip: str, *, per_remote_ip: bool) -> _Rules:
    """Random first allocation, then the same mapped port for every later flow of the key.

    The key is the inside address and port, plus the remote IP for address-dependent mapping.
    """
    key_type = "ipv4_addr . inet_service" + (" . ipv4_addr" if per_remote_ip else "")
    key = "ip saddr . udp sport" + (" . ip daddr" if per_remote_ip else "")
    learned = "ct original ip saddr . ct original proto-src" + (
        " . ct original ip daddr" if per_remote_ip else ""
    )
    return _Rules(
        maps=f"  map m {{ type {key_type} : inet_service; {_DYN} }}\n",
        post=(
            f'    oifname "{wan}" meta l4proto udp snat ip to {wan_ip} : {key} map @m\n'
            f'    oifname "{wan}" masquerade fully-random\n'
        ),
        track=(
            f'    oifname "{wan}" meta l4proto udp ct direction original ct status snat '
            f"update @m {{ {learned} : ct reply proto-dst }}\n"
        ),
    )


def _cone(wan: str, *, restricted: bool) -> str:
    """Full or restricted cone: masquerade (ports kept) plus the inbound reverse map."""
    return (
        _inbound(wan, restricted=restricted) + _Rules(post=f'    oifname "{wan}" masquerade\n')
    ).table()


def _carrier(wan: str, wan_ip: str) -> str:
    """A carrier's NAT: the learned mapping's random-then-kept port (EIM), and inbound packets
    let in from any port of an IP the mapped port has sent to (address-dependent filtering)."""
    return (_learned(wan, wan_ip, per_remote_ip=False) + _inbound(wan, restricted=True)).table()


def _sequential_ports() -> str:
    # numgen yields a host-order integer that SNAT would read as a network-order port, so the
    # counter goes through a map whose values are typed ports.
    return ", ".join(f"{i} : {SEQUENTIAL_PORT_BASE + i}" for i in range(SEQUENTIAL_PORT_SPAN))


def nat_ruleset(preset: NatPreset, *, wan: str, wan_ip: str) -> str:
    """The ``lab_nat`` table for one router of ``preset`` (empty for :attr:`NatPreset.NONE`);
    a preset of several routers has one per layer (:attr:`NatPreset.layers`)."""
    match preset:
        case NatPreset.NONE:
            return ""
        case NatPreset.CGNAT:
            return _carrier(wan, wan_ip)
        case NatPreset.CGNAT_FULL_CONE:
            raise ValueError(f"{preset.value} is several routers: one ruleset per layer")
        case NatPreset.FULL_CONE:
            return _cone(wan, restricted=False)
        case NatPreset.RESTRICTED_CONE:
            return _cone(wan, restricted=True)
        case NatPreset.PORT_RESTRICTED_CONE:
            return _Rules(post=f'    oifname "{wan}" masquerade\n').table()
        case NatPreset.SYMMETRIC:
            return _Rules(post=f'    oifname "{wan}" masquerade fully-random\n').table()
        case NatPreset.EIM_RANDOM_PORT:
            return _learned(wan, wan_ip, per_remote_ip=False).table()
        case NatPreset.ADDRESS_DEPENDENT:
            return _learned(wan, wan_ip, per_remote_ip=True).table()
        case NatPreset.SYMMETRIC_SEQUENTIAL:
            return _Rules(
                post=f'    oifname "{wan}" meta l4proto udp snat ip to {wan_ip} : '
                f"numgen inc mod {SEQUENTIAL_PORT_SPAN} map {{ {_sequential_ports()} }}\n"
                f'    oifname "{wan}" masquerade\n'
            ).table()


_NEIGHBOUR_DISCOVERY = """\
table inet lab_filter {
  chain input {
    icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept
  }
}
"""
"""Added for an IPv6 router: its hosts' and peers' neighbour discovery reaches it (IPv4's ARP is
not filtered by ``inet`` tables; ND is ICMPv6)."""


def router_ruleset(
    preset: NatPreset, *, wan: str, lan: str, wan_ip: str, ipv6: bool = False
) -> str:
    """The complete ruleset (firewall and NAT) loaded into a router with ``nft -f``.

    The ``inet`` firewall is the IPv6 router's whole job too (``ipv6``): IPv6 is routed without
    NAT, so its forward chain (``ct state established,related accept``, LAN to WAN accepted,
    everything else dropped) is a stateful IPv6 firewall: no NAT, address- and
    port-dependent filtering."""
    firewall = _FILTER.format(wan=wan, lan=lan) + (_NEIGHBOUR_DISCOVERY if ipv6 else "")
    return firewall + nat_ruleset(preset, wan=wan, wan_ip=wan_ip)


def nat_flush_script(preset: NatPreset) -> str:
    """``nft -f`` input that forgets the mappings ``preset`` learned in its dynamic maps."""
    match preset:
        case NatPreset.FULL_CONE:
            items: tuple[tuple[str, str], ...] = (("map", "f_rev"),)
        case NatPreset.RESTRICTED_CONE:
            items = (("map", "f_rev"), ("set", "r_allow"))
        case NatPreset.EIM_RANDOM_PORT | NatPreset.ADDRESS_DEPENDENT:
            items = (("map", "m"),)
        case NatPreset.CGNAT:
            items = (("map", "m"), ("map", "f_rev"), ("set", "r_allow"))
        case _:
            items = ()
    return "".join(f"flush {kind} ip {NAT_TABLE} {name}\n" for kind, name in items)
