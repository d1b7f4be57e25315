"""The lab's layout and rulesets as data: no root needed."""

from __future__ import annotations

import os
import re
import shutil

import pytest

from tests.nat_lab import NatPreset, SiteConfig, lab_available
from tests.nat_lab.names import claim_prefix, own_prefix, release_prefix
from tests.nat_lab.nft import nat_flush_script, router_ruleset
from tests.nat_lab.topology import netns_scripts, plan_lab, root_batch, teardown_batch

ALL = [SiteConfig(p, hosts=2, delay_ms=5) for p in NatPreset]
LAB_RANGES = ("203.0.113.", "10.0.", "100.64.")
"""Documentation, private and RFC 6598 shared space: the only addresses a lab may use."""


def test_prefix_is_per_process_and_per_lab() -> None:
    first, second = claim_prefix(), claim_prefix()
    release_prefix(first)
    release_prefix(second)
    assert own_prefix() == f"mnl{os.getpid()}-"
    assert first != second
    assert first.startswith(own_prefix()) and second.startswith(own_prefix())


@pytest.mark.parametrize("impairment", ["netem", "wire"])
def test_plan_addresses_and_names(impairment: str) -> None:
    plan = plan_lab("mnlX-1", ALL, impairment=impairment)  # type: ignore[arg-type]
    assert len(set(plan.namespaces)) == len(plan.namespaces)
    assert all(ns.startswith("mnlX-1-") for ns in plan.namespaces)
    routers = [r for s in plan.sites for r in s.routers]
    ips = [h.ip for s in plan.sites for h in s.hosts] + [r.wan_ip for r in routers]
    ips += [r.lan_ip for r in routers]
    assert len(set(ips)) == len(ips)
    for ip in ips:
        assert ip.startswith(LAB_RANGES), ip
    for site in plan.sites:
        assert [r.layer for r in site.routers] == list(site.preset.layers)
        if site.preset is NatPreset.NONE:
            assert site.public_ip is None
            assert all(h.public_ip == h.ip and h.gateway is None for h in site.hosts)
            continue
        assert site.public_ip == f"203.0.113.{10 + site.index}"
        assert all(h.gateway == site.routers[-1].lan_ip for h in site.hosts)
        assert all(h.public_ip == site.public_ip for h in site.hosts)
        for outer, inner in zip(site.routers, site.routers[1:], strict=False):
            assert inner.upstream == outer.lan_ip  # each router routes through the one before
    cgnat = next(s for s in plan.sites if s.preset is NatPreset.CGNAT)
    assert cgnat.hosts[0].ip == f"100.64.{cgnat.index}.2"  # RFC 6598 space behind a carrier
    double = next(s for s in plan.sites if s.preset is NatPreset.CGNAT_FULL_CONE)
    assert [r.wan_ip for r in double.routers] == [
        f"203.0.113.{10 + double.index}",
        f"100.64.{double.index}.2",
    ]
    assert double.hosts[0].ip == f"10.0.{double.index}.2"
    assert len(plan.wire_links) == (len(plan.links) if impairment == "wire" else 0)


def test_interface_names_fit_the_kernel_limit() -> None:
    plan = plan_lab("mnl4194304-99", ALL, impairment="wire")
    text = root_batch(plan) + "".join(netns_scripts(plan).values())
    names = re.findall(r"(?:dev|name|link add|master|set) (\S+)", text)
    assert names
    assert max(len(n) for n in names if not n.startswith("mnl")) <= 15


def test_scripts_cover_every_namespace_and_only_lab_addresses() -> None:
    plan = plan_lab("mnlX-2", ALL, delay_ms=20, loss=0.05, impairment="netem")
    scripts = netns_scripts(plan)
    assert set(scripts) == set(plan.namespaces)
    for site in plan.sites:
        for depth, router in enumerate(site.routers):
            assert "ip_forward" in scripts[router.netns]
            impaired = "netem delay 5ms loss 5%" in scripts[router.netns]  # site overrides lab
            assert impaired == (depth == 0)  # the access link is the outermost router's
    assert "bridge-nf-call-iptables" in scripts[plan.pub_netns]
    addrs = re.findall(r"addr add (\S+)", "".join(scripts.values()))
    assert all(a.startswith(LAB_RANGES) for a in addrs)
    assert teardown_batch(plan.namespaces).count("netns del") == len(plan.namespaces)


LAYERS = sorted({layer for p in NatPreset for layer in p.layers}, key=lambda p: p.value)


@pytest.mark.parametrize("preset", LAYERS, ids=lambda p: p.value)
def test_router_ruleset_drops_unsolicited_and_nats(preset: NatPreset) -> None:
    rules = router_ruleset(preset, wan="wan", lan="lan", wan_ip="203.0.113.11")
    assert "hook input priority filter; policy drop;" in rules
    assert "hook postrouting priority srcnat" in rules
    random_port = preset.expected.allocation == "rd"
    assert ("fully-random" in rules) == random_port
    for line in nat_flush_script(preset).splitlines():
        assert line.split()[-1] in rules


def test_site_config_validates() -> None:
    with pytest.raises(ValueError):
        SiteConfig(NatPreset.FULL_CONE, hosts=0)
    with pytest.raises(ValueError):
        SiteConfig(NatPreset.FULL_CONE, loss=1.0)
    with pytest.raises(ValueError):
        plan_lab("x", [SiteConfig(NatPreset.NONE, hosts=60)])


def test_expected_classifications() -> None:
    table = {p.value: p.expected for p in NatPreset}
    assert not table["none"].nat
    assert all(c.nat for name, c in table.items() if name != "none")
    assert (table["full_cone"].mapping, table["full_cone"].filtering) == ("ei", "ei")
    assert table["restricted_cone"].filtering == "hd"
    assert table["port_restricted_cone"].allocation == "pp"
    assert (table["symmetric"].mapping, table["symmetric"].allocation) == ("pd", "rd")


def test_lab_available_explains_why_not(monkeypatch: pytest.MonkeyPatch) -> None:
    lab_available.cache_clear()
    try:
        monkeypatch.setattr(os, "geteuid", lambda: 1000)
        ok, reason = lab_available()
        assert not ok and "root" in reason
        lab_available.cache_clear()
        monkeypatch.setattr(os, "geteuid", lambda: 0)
        monkeypatch.setattr(shutil, "which", lambda tool: None)
        ok, reason = lab_available()
        assert not ok and "nft" in reason and "conntrack" in reason
    finally:
        lab_available.cache_clear()


def test_ipv6_sites_are_routed_2001_db8_prefixes_behind_the_firewall() -> None:
    sites = [
        SiteConfig(NatPreset.PORT_RESTRICTED_CONE, family="dual"),
        SiteConfig(NatPreset.SYMMETRIC, family="ipv6"),
        SiteConfig(NatPreset.NONE, family="ipv6"),
        SiteConfig(NatPreset.FULL_CONE),
    ]
    plan = plan_lab("mnlX-6", sites)
    dual, six, public, four = (site.hosts[0] for site in plan.sites)
    assert (dual.ip, dual.ip6, dual.gateway6) == ("10.0.1.2", "2001:db8:1::2", "2001:db8:1::1")
    assert (six.ip, six.public_ip, six.gateway) == ("2001:db8:2::2",) * 2 + ("2001:db8:2::1",)
    assert (public.ip, public.ip6, public.gateway) == ("2001:db8::200", "2001:db8::200", None)
    assert four.ip6 is None and plan.ipv6
    assert plan.ipv6_routes == (
        ("2001:db8:1::/64", "2001:db8::11"),
        ("2001:db8:2::/64", "2001:db8::12"),
    )
    scripts = netns_scripts(plan)
    server = scripts[plan.server_netns]
    assert "addr add 2001:db8::100/64 dev eth0 nodad" in server
    assert "route add 2001:db8:2::/64 via 2001:db8::12" in server
    router = scripts[plan.sites[0].routers[0].netns]
    assert "ipv6/conf/all/forwarding" in router and "nd-neighbor-solicit" in router
    assert "route add 2001:db8:2::/64 via 2001:db8::12" in router
    assert "route add 2001:db8:1::/64" not in router  # its own prefix is on its LAN
    assert "addr add 10.0.2.2" not in scripts[six.netns]  # IPv6 only
    assert "disable_ipv6" in scripts[plan.sites[3].hosts[0].netns]  # IPv4 sites stay quiet
    assert all("nodad" in line for line in router.splitlines() if "addr add 2001" in line)


def test_ipv6_needs_a_single_router_and_a_known_family() -> None:
    with pytest.raises(ValueError, match="single router"):
        plan_lab("x", [SiteConfig(NatPreset.CGNAT_FULL_CONE, family="dual")])
    with pytest.raises(ValueError):
        SiteConfig(NatPreset.FULL_CONE, family="ipv5")  # type: ignore[arg-type]


def test_an_ipv4_lab_is_unchanged_by_the_ipv6_option() -> None:
    plan = plan_lab("mnlX-4", ALL)
    assert not plan.ipv6 and plan.ipv6_routes == ()
    for script in netns_scripts(plan).values():
        assert "2001:db8" not in script and "nd-neighbor" not in script
