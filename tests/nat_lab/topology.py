"""The lab's layout as data, and the shell scripts that build it (pure, no I/O).

Layout: namespace ``<prefix>-pub`` holds bridge ``br0`` (the public segment 203.0.113.0/24);
``<prefix>-srv`` holds the public server addresses 203.0.113.100 and .101. Site N (from 1) is
either a NAT router ``<prefix>-sNr`` (WAN 203.0.113.(10+N) on the bridge, LAN bridge 10.0.N.1/24)
with hosts ``<prefix>-sNhM`` at 10.0.N.(1+M), or, for :attr:`NatPreset.NONE`, public hosts on the
bridge at 203.0.113.200 and up. A carrier's NAT (:attr:`NatPreset.CGNAT`) serves the RFC 6598
shared space 100.64.N.0/24 instead; a double NAT puts a second router ``<prefix>-sNr2`` on that
LAN at 100.64.N.2, its own LAN 10.0.N.1/24 holding the hosts. Every access link (the outermost
router's WAN or a public host's) can be impaired.

IPv6 (a site's ``family`` ``ipv6`` or ``dual``): the segment is also 2001:db8::/64, the server
holds 2001:db8::100 and ::101, a router 2001:db8::(10+N) on its WAN and 2001:db8:N::1/64 on its
LAN, its hosts 2001:db8:N::(1+M) (routed, no NAT: the router's stateful firewall filters them),
public hosts 2001:db8::(200 and up). Every IPv6 node routes each site's /64 via that site's
router. Addresses are added ``nodad`` (no duplicate address detection delay); ``ipv6`` hosts have
no IPv4 address at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import attrs

from tests.nat_lab.nft import router_ruleset
from tests.nat_lab.presets import NatPreset

Impairment = Literal["netem", "wire"]
Family = Literal["ipv4", "ipv6", "dual"]
"""The IP versions a site's hosts have: IPv4 only (the default), IPv6 only, or both."""
"""How delay and loss are applied: kernel netem qdiscs, or the userspace delay line."""

BRIDGE = "br0"
WAN_IF = "wan"
LAN_IF = "lan"
HOST_IF = "eth0"
DOWNSTREAM_IF = "inner"
"""A router's port on its LAN bridge toward the next router in (double NAT)."""
PUBLIC_PREFIX_LEN = 24
SERVER_IPS = ("203.0.113.100", "203.0.113.101")
SERVER_IPS6 = ("2001:db8::100", "2001:db8::101")
IPV6_PREFIX_LEN = 64
MAX_SITES = 89
MAX_HOSTS_PER_SITE = 200
_PUBLIC_HOST_POOL = range(200, 255)


def _check_hosts(_inst: object, _attr: object, value: int) -> None:
    if not 1 <= value <= MAX_HOSTS_PER_SITE:
        raise ValueError(f"hosts must be in 1..{MAX_HOSTS_PER_SITE}, not {value}")


def _check_loss(_inst: object, _attr: object, value: float | None) -> None:
    if value is not None and not 0.0 <= value < 1.0:
        raise ValueError(f"loss must be in [0, 1), not {value}")


def _check_delay(_inst: object, _attr: object, value: float | None) -> None:
    if value is not None and not 0.0 <= value <= 10_000.0:
        raise ValueError(f"delay_ms must be in [0, 10000], not {value}")


@attrs.frozen
class SiteConfig:
    """One site of the lab: a NAT preset, how many hosts sit behind it, its link impairment.

    ``delay_ms`` (one way, each direction) and ``loss`` (probability per frame and direction)
    apply to the site's access link; ``None`` takes the lab-wide value.
    """

    preset: NatPreset
    hosts: int = attrs.field(default=1, validator=_check_hosts)
    delay_ms: float | None = attrs.field(default=None, validator=_check_delay)
    loss: float | None = attrs.field(default=None, validator=_check_loss)
    family: Family = attrs.field(
        default="ipv4", validator=attrs.validators.in_(("ipv4", "ipv6", "dual"))
    )
    """The hosts' IP versions; IPv6 goes through the router's stateful firewall, not its NAT."""

    @property
    def ipv4(self) -> bool:
        return self.family != "ipv6"

    @property
    def ipv6(self) -> bool:
        return self.family != "ipv4"


@attrs.frozen
class LinkPlan:
    """An access link between interface ``ifname`` of ``netns`` and port ``port`` of the bridge."""

    netns: str
    ifname: str
    port: str
    delay_ms: float
    loss: float

    @property
    def impaired(self) -> bool:
        return self.delay_ms > 0 or self.loss > 0


@attrs.frozen
class HostPlan:
    """A host: its namespace, its own address, the address the public side sees, its gateway."""

    label: str
    netns: str
    ip: str
    """Its IPv4 address, or its IPv6 one when it has no IPv4."""
    public_ip: str
    gateway: str | None
    ip6: str | None = None
    """Its IPv6 address (public: no NAT), if it has one."""
    gateway6: str | None = None


@attrs.frozen
class RouterPlan:
    """A NAT router: its namespace, the single-router preset whose rules it runs, its addresses.

    ``upstream`` is the router in front of it (its default gateway), None on the public segment.
    """

    netns: str
    layer: NatPreset
    wan_ip: str
    wan_prefix_len: int
    lan_ip: str
    upstream: str | None
    wan_ip6: str | None = None
    lan_ip6: str | None = None


@attrs.frozen
class SitePlan:
    """A site: its preset, routers (outermost first; none for NONE) and hosts."""

    index: int
    preset: NatPreset
    routers: tuple[RouterPlan, ...]
    hosts: tuple[HostPlan, ...]

    @property
    def public_ip(self) -> str | None:
        """The address the public segment sees the site's hosts by, if they are behind a NAT."""
        return self.routers[0].wan_ip if self.routers else None


@attrs.frozen
class LabPlan:
    """Everything needed to build and tear down one lab."""

    prefix: str
    pub_netns: str
    server_netns: str
    sites: tuple[SitePlan, ...]
    links: tuple[LinkPlan, ...]
    impairment: Impairment

    @property
    def ipv6(self) -> bool:
        """Whether any site has IPv6 (the server then has its IPv6 addresses too)."""
        return any(h.ip6 is not None for site in self.sites for h in site.hosts)

    @property
    def ipv6_routes(self) -> tuple[tuple[str, str], ...]:
        """(site /64, via its router's WAN address) for every IPv6 site behind a router."""
        return tuple(
            (f"{site.routers[0].lan_ip6.rsplit('::', 1)[0]}::/{IPV6_PREFIX_LEN}",
             site.routers[0].wan_ip6)
            for site in self.sites
            if site.routers and site.routers[0].wan_ip6 is not None
            and site.routers[0].lan_ip6 is not None
        )  # fmt: skip

    @property
    def namespaces(self) -> tuple[str, ...]:
        """All namespaces of the lab, the public segment first."""
        names = [self.pub_netns, self.server_netns]
        for site in self.sites:
            names.extend(r.netns for r in site.routers)
            names.extend(h.netns for h in site.hosts)
        return tuple(names)

    @property
    def wire_links(self) -> tuple[LinkPlan, ...]:
        """Links that need a userspace delay line process."""
        if self.impairment != "wire":
            return ()
        return tuple(link for link in self.links if link.impaired)


def _effective(cfg: SiteConfig, delay_ms: float, loss: float) -> tuple[float, float]:
    return (
        delay_ms if cfg.delay_ms is None else cfg.delay_ms,
        loss if cfg.loss is None else cfg.loss,
    )


def needs_impairment(sites: Sequence[SiteConfig], *, delay_ms: float, loss: float) -> bool:
    """Whether any site's access link gets delay or loss."""
    return any(max(_effective(cfg, delay_ms, loss)) > 0 for cfg in sites)


def _plan_routers(
    prefix: str, index: int, preset: NatPreset, ipv6: bool = False
) -> tuple[RouterPlan, ...]:
    """Site ``index``'s routers, outermost first: a carrier's LAN is 100.64.N.0/24, a home
    router's 10.0.N.0/24; an inner router sits at .2 of the LAN in front of it. With ``ipv6``
    (a single router only) it routes 2001:db8:N::/64 too."""
    if ipv6 and len(preset.layers) != 1:
        raise ValueError(f"IPv6 sites need a single router, not {preset.value}'s layers")
    routers: list[RouterPlan] = []
    for depth, layer in enumerate(preset.layers):
        lan = f"100.64.{index}" if layer is NatPreset.CGNAT else f"10.0.{index}"
        if depth == 0:
            wan_ip, prefix_len, upstream = f"203.0.113.{10 + index}", PUBLIC_PREFIX_LEN, None
        else:
            outer = routers[-1]
            wan_ip = f"{outer.lan_ip.rsplit('.', 1)[0]}.2"
            prefix_len, upstream = 24, outer.lan_ip
        netns = f"{prefix}-s{index}r" + (f"{depth + 1}" if depth else "")
        routers.append(RouterPlan(netns, layer, wan_ip, prefix_len, f"{lan}.1", upstream))
    if ipv6:
        routers[0] = attrs.evolve(
            routers[0], wan_ip6=f"2001:db8::{10 + index}", lan_ip6=f"2001:db8:{index}::1"
        )
    return tuple(routers)


def plan_lab(
    prefix: str,
    sites: Sequence[SiteConfig],
    *,
    delay_ms: float = 0.0,
    loss: float = 0.0,
    impairment: Impairment = "netem",
) -> LabPlan:
    """Lay out a lab: names, addresses and links for ``sites`` (in order, numbered from 1)."""
    if len(sites) > MAX_SITES:
        raise ValueError(f"at most {MAX_SITES} sites, not {len(sites)}")
    _check_delay(None, None, delay_ms)
    _check_loss(None, None, loss)
    public_pool = iter(_PUBLIC_HOST_POOL)
    site_plans: list[SitePlan] = []
    links: list[LinkPlan] = []
    for index, cfg in enumerate(sites, start=1):
        site_delay, site_loss = _effective(cfg, delay_ms, loss)
        hosts: list[HostPlan] = []
        if cfg.preset.has_router:
            routers = _plan_routers(prefix, index, cfg.preset, cfg.ipv6)
            outer, inner = routers[0], routers[-1]
            links.append(LinkPlan(outer.netns, WAN_IF, f"r{index}", site_delay, site_loss))
            subnet = inner.lan_ip.rsplit(".", 1)[0]
            for m in range(1, cfg.hosts + 1):
                ip6 = f"2001:db8:{index}::{1 + m}" if cfg.ipv6 else None
                hosts.append(
                    HostPlan(
                        label=f"s{index}h{m}",
                        netns=f"{prefix}-s{index}h{m}",
                        ip=f"{subnet}.{1 + m}" if cfg.ipv4 else str(ip6),
                        public_ip=outer.wan_ip if cfg.ipv4 else str(ip6),
                        gateway=inner.lan_ip if cfg.ipv4 else outer.lan_ip6,
                        ip6=ip6,
                        gateway6=outer.lan_ip6,
                    )
                )
            site_plans.append(SitePlan(index, cfg.preset, routers, tuple(hosts)))
            continue
        for m in range(1, cfg.hosts + 1):
            last = next(public_pool, None)
            if last is None:
                raise ValueError("too many public hosts for 203.0.113.200-254")
            netns = f"{prefix}-s{index}h{m}"
            ip6 = f"2001:db8::{last}" if cfg.ipv6 else None
            ip = f"203.0.113.{last}" if cfg.ipv4 else str(ip6)
            hosts.append(HostPlan(f"s{index}h{m}", netns, ip, ip, None, ip6))
            links.append(LinkPlan(netns, HOST_IF, f"p{index}h{m}", site_delay, site_loss))
        site_plans.append(SitePlan(index, cfg.preset, (), tuple(hosts)))
    return LabPlan(
        prefix=prefix,
        pub_netns=f"{prefix}-pub",
        server_netns=f"{prefix}-srv",
        sites=tuple(site_plans),
        links=tuple(links),
        impairment=impairment,
    )


def root_batch(plan: LabPlan) -> str:
    """``ip -batch`` input run outside the lab: namespaces, bridges and veth pairs.

    Every device is created directly inside its namespace; none ever exists outside the lab.
    """
    lines = [f"netns add {ns}" for ns in plan.namespaces]
    pub = plan.pub_netns
    lines.append(f"link add {BRIDGE} netns {pub} type bridge")
    lines.append(
        f"link add {HOST_IF} netns {plan.server_netns} type veth peer name srv netns {pub}"
    )
    wired = {(link.netns, link.ifname) for link in plan.wire_links}
    for link in plan.links:
        if (link.netns, link.ifname) not in wired:
            lines.append(
                f"link add {link.ifname} netns {link.netns} type veth "
                f"peer name {link.port} netns {pub}"
            )
    for site in plan.sites:
        if not site.routers:
            continue
        for outer, inner in zip(site.routers, site.routers[1:], strict=False):
            lines.append(
                f"link add {WAN_IF} netns {inner.netns} type veth "
                f"peer name {DOWNSTREAM_IF} netns {outer.netns}"
            )
        lines.extend(f"link add {LAN_IF} netns {r.netns} type bridge" for r in site.routers)
        for m, host in enumerate(site.hosts, start=1):
            lines.append(
                f"link add {HOST_IF} netns {host.netns} type veth "
                f"peer name h{m} netns {site.routers[-1].netns}"
            )
    return "\n".join(lines) + "\n"


_QUIET_IPV6 = (
    "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6\n"
    "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6\n"
)

_IPV6_ON = "".join(
    f"echo {value} > /proc/sys/net/ipv6/conf/{scope}/{name}\n"
    for name, value in (("disable_ipv6", 0), ("accept_dad", 0), ("accept_ra", 0))
    for scope in ("all", "default")
)
"""IPv6 on, without duplicate address detection or router advertisements: addresses are
usable at once and routes are only what the lab sets."""


def _ipv6_routes(plan: LabPlan, own: str | None = None) -> list[str]:
    """``ip`` lines routing every IPv6 site's /64 via its router (but the router's own)."""
    return [f"route add {net} via {via}" for net, via in plan.ipv6_routes if via != own]


_NO_BRIDGE_NF = "".join(
    f"f=/proc/sys/net/bridge/bridge-nf-call-{t}; if [ -e $f ]; then echo 0 > $f; fi\n"
    for t in ("iptables", "ip6tables", "arptables")
)


def _heredoc(command: str, body: str) -> str:
    return f"{command} <<'LAB_EOF'\n{body}LAB_EOF\n"


def _netem(link: LinkPlan, dev: str) -> str:
    return (
        f"tc qdisc add dev {dev} root netem delay {link.delay_ms:g}ms loss {link.loss * 100:g}%\n"
    )


def _access_link_setup(plan: LabPlan, link: LinkPlan) -> tuple[list[str], str]:
    """ip batch lines creating the far end of an access link (if a tap), and its netem shell."""
    create = [f"tuntap add dev {link.ifname} mode tap"] if link in plan.wire_links else []
    shell = _netem(link, link.ifname) if link.impaired and plan.impairment == "netem" else ""
    return create, shell


def _router_script(
    plan: LabPlan, links: dict[str, LinkPlan], router: RouterPlan, site: SitePlan, depth: int
) -> str:
    """The ``sh -e`` script of one of ``site``'s routers (``depth`` 0 is the outermost)."""
    create, shell = _access_link_setup(plan, links[router.netns]) if depth == 0 else ([], "")
    lines = [
        "link set lo up",
        *create,
        f"addr add {router.wan_ip}/{router.wan_prefix_len} dev {WAN_IF}",
        f"link set {WAN_IF} up",
        f"addr add {router.lan_ip}/24 dev {LAN_IF}",
        f"link set {LAN_IF} up",
    ]
    if router.upstream is not None:
        lines.append(f"route add default via {router.upstream}")
    if depth < len(site.routers) - 1:
        lines.append(f"link set {DOWNSTREAM_IF} master {LAN_IF} up")
    else:
        lines += [f"link set h{m} master {LAN_IF} up" for m in range(1, len(site.hosts) + 1)]
    ipv6 = router.wan_ip6 is not None and router.lan_ip6 is not None
    if ipv6:
        lines += [
            f"addr add {router.wan_ip6}/{IPV6_PREFIX_LEN} dev {WAN_IF} nodad",
            f"addr add {router.lan_ip6}/{IPV6_PREFIX_LEN} dev {LAN_IF} nodad",
            f"link set {LAN_IF} type bridge mcast_snooping 0",
            *_ipv6_routes(plan, router.wan_ip6),
        ]
    ruleset = router_ruleset(router.layer, wan=WAN_IF, lan=LAN_IF, wan_ip=router.wan_ip, ipv6=ipv6)
    return (
        (_IPV6_ON + "echo 1 > /proc/sys/net/ipv6/conf/all/forwarding\n" if ipv6 else _QUIET_IPV6)
        + _NO_BRIDGE_NF
        + "echo 1 > /proc/sys/net/ipv4/ip_forward\n"
        + _heredoc("ip -batch -", "\n".join(lines) + "\n")
        + _heredoc("nft -f -", ruleset)
        + shell
    )


def netns_scripts(plan: LabPlan) -> dict[str, str]:
    """A ``sh -e`` script per namespace that configures it, to run inside it."""
    scripts: dict[str, str] = {}
    links = {link.netns: link for link in plan.links}

    pub_lines = ["link set lo up", f"link set {BRIDGE} up", f"link set srv master {BRIDGE} up"]
    pub_shell = ""
    for link in plan.links:
        if link in plan.wire_links:
            pub_lines.append(f"tuntap add dev {link.port} mode tap")
        pub_lines.append(f"link set {link.port} master {BRIDGE} up")
        if link.impaired and plan.impairment == "netem":
            pub_shell += _netem(link, link.port)
    if plan.ipv6:  # no MLD snooping: neighbour discovery's multicast reaches every port
        pub_lines.append(f"link set {BRIDGE} type bridge mcast_snooping 0")
    scripts[plan.pub_netns] = (
        _QUIET_IPV6
        + _NO_BRIDGE_NF
        + _heredoc("ip -batch -", "\n".join(pub_lines) + "\n")
        + pub_shell
    )

    srv_lines = ["link set lo up"]
    srv_lines += [f"addr add {ip}/{PUBLIC_PREFIX_LEN} dev {HOST_IF}" for ip in SERVER_IPS]
    if plan.ipv6:
        srv_lines += [f"addr add {ip}/{IPV6_PREFIX_LEN} dev {HOST_IF} nodad" for ip in SERVER_IPS6]
    srv_lines.append(f"link set {HOST_IF} up")
    srv_lines += _ipv6_routes(plan)
    scripts[plan.server_netns] = (_IPV6_ON if plan.ipv6 else _QUIET_IPV6) + _heredoc(
        "ip -batch -", "\n".join(srv_lines) + "\n"
    )

    for site in plan.sites:
        for depth, router in enumerate(site.routers):
            scripts[router.netns] = _router_script(plan, links, router, site, depth)
        for host in site.hosts:
            h_lines = ["link set lo up"]
            h_shell = ""
            prefix_len = 24
            if host.gateway is None:
                create, h_shell = _access_link_setup(plan, links[host.netns])
                h_lines += create
                prefix_len = PUBLIC_PREFIX_LEN
            if host.ip != host.ip6:
                h_lines.append(f"addr add {host.ip}/{prefix_len} dev {HOST_IF}")
            if host.ip6 is not None:
                h_lines.append(f"addr add {host.ip6}/{IPV6_PREFIX_LEN} dev {HOST_IF} nodad")
            h_lines.append(f"link set {HOST_IF} up")
            if host.gateway is not None and host.gateway != host.gateway6:
                h_lines.append(f"route add default via {host.gateway}")
            if host.gateway6 is not None:
                h_lines.append(f"route add default via {host.gateway6}")
            elif host.ip6 is not None:
                h_lines += _ipv6_routes(plan)
            sysctls = _QUIET_IPV6 if host.ip6 is None else _IPV6_ON
            scripts[host.netns] = (
                sysctls + _heredoc("ip -batch -", "\n".join(h_lines) + "\n") + h_shell
            )
    return scripts


def teardown_batch(namespaces: Sequence[str]) -> str:
    """``ip -force -batch`` input that deletes ``namespaces``."""
    return "".join(f"netns del {ns}\n" for ns in namespaces)
