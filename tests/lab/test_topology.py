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
    ips = [h.ip for s in plan.sites for h in s.hosts] + [s.wan_ip for s in plan.sites if s.wan_ip]
    assert len(set(ips)) == len(ips)
    for ip in ips:
        assert ip.startswith(("203.0.113.", "10.0.")), ip
    for site in plan.sites:
        if site.preset is NatPreset.NONE:
            assert site.router_netns is None
            assert all(h.public_ip == h.ip and h.gateway is None for h in site.hosts)
        else:
            assert site.wan_ip == f"203.0.113.{10 + site.index}"
            assert all(h.gateway == f"10.0.{site.index}.1" for h in site.hosts)
            assert all(h.public_ip == site.wan_ip for h in site.hosts)
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
        if site.router_netns is not None:
            assert "ip_forward" in scripts[site.router_netns]
            assert "netem delay 5ms loss 5%" in scripts[site.router_netns]  # site overrides lab
    assert "bridge-nf-call-iptables" in scripts[plan.pub_netns]
    addrs = re.findall(r"addr add (\S+)", "".join(scripts.values()))
    assert all(a.startswith(("203.0.113.", "10.0.")) for a in addrs)
    assert teardown_batch(plan.namespaces).count("netns del") == len(plan.namespaces)


@pytest.mark.parametrize("preset", [p for p in NatPreset if p.has_router], ids=lambda p: p.value)
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
