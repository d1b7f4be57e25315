"""Can this machine run the lab? Checked once per process, by really trying (synchronous)."""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import sys

from tests.nat_lab.names import claim_prefix, release_prefix

logger = logging.getLogger(__name__)

_PROBE_TIMEOUT_S = 10.0

_PROBE_RULESET = """\
table ip lab_probe {
  map m { type ipv4_addr . inet_service : inet_service; flags dynamic,timeout; timeout 10s; }
  chain post {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "lo" meta l4proto udp snat ip to 127.0.0.1 : ip saddr . udp sport map @m
    oifname "lo" masquerade fully-random
  }
}
"""

REQUIRED_TOOLS = ("ip", "nft", "conntrack")


def _run(argv: list[str], stdin: str = "") -> tuple[bool, str]:
    try:
        done = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=_PROBE_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"{argv[0]}: {exc}"
    return done.returncode == 0, done.stderr.strip()


def _probe(commands: list[tuple[list[str], str]]) -> tuple[bool, str]:
    """Run ``commands`` (argv relative to a throwaway namespace, stdin) and report the first
    failure."""
    netns = claim_prefix() + "-probe"
    try:
        ok, err = _run(["ip", "netns", "add", netns])
        if not ok:
            return False, f"`ip netns add` failed: {err}"
        for argv, stdin in commands:
            ok, err = _run(["ip", "netns", "exec", netns, *argv], stdin)
            if not ok:
                return False, f"`{' '.join(argv)}` failed in a namespace: {err}"
        return True, ""
    finally:
        _run(["ip", "netns", "del", netns])
        release_prefix(netns.removesuffix("-probe"))


@functools.cache
def lab_available() -> tuple[bool, str]:
    """``(True, "")`` when the lab can run here, else ``(False, why not)``.

    Needs Linux, root, ``ip netns``, and nftables NAT and conntrack in the kernel and userland.
    """
    if sys.platform != "linux":
        return False, f"the NAT lab needs Linux network namespaces, not {sys.platform}"
    if os.geteuid() != 0:
        return False, "the NAT lab needs root (network namespaces, nftables)"
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        return False, (
            f"missing {', '.join(missing)}: install Debian nftables conntrack iproute2 "
            "(make lab-deps)"
        )
    ok, why = _probe([(["nft", "-f", "-"], _PROBE_RULESET), (["conntrack", "-F"], "")])
    if not ok:
        logger.warning("NAT lab unavailable: %s", why)
    return ok, why


@functools.cache
def netem_available() -> bool:
    """Whether the kernel has the netem qdisc (``tc qdisc ... netem``)."""
    if shutil.which("tc") is None or not lab_available()[0]:
        return False
    ok, why = _probe(
        [
            (["ip", "link", "set", "lo", "up"], ""),
            (["tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"], ""),
        ]
    )
    if not ok:
        logger.info("netem unavailable, delay and loss use the userspace wire: %s", why)
    return ok


def tun_available() -> bool:
    """Whether TAP devices can be opened (for the userspace wire)."""
    return os.path.exists("/dev/net/tun")
