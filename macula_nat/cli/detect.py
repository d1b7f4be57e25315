"""``macula-nat detect [--observer IP:PORT ...] [--json]``: classify this host's NAT once.

It loads the detector, Trio and the sockets, nothing of the QUIC stack, the DHT or the web page
(``tests/cli/test_startup.py`` keeps it so)."""

from __future__ import annotations

import argparse
import functools
import json
import time
from collections.abc import Callable, Sequence

import trio

from macula_nat.nat.classify import classify
from macula_nat.nat.errors import DetectionError
from macula_nat.nat.probe import run_probes
from macula_nat.nat.profile import NatProfile
from macula_nat.net.address import Address
from macula_nat.net.endpoint import UdpStack
from macula_nat.net.real import RealUdpStack


def run_detect(args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    """Detect once and print; a failure exits with status 1 and its message on stderr."""
    detection = functools.partial(detect_once, tuple(args.observers), args.timeout)
    try:
        profile = trio.run(detection)
    except DetectionError as exc:
        raise SystemExit(f"macula-nat detect: {exc}") from None
    out(json.dumps(profile.to_json(), indent=2) if args.json else describe(profile))
    return 0


async def detect_once(
    observers: Sequence[Address], timeout: float, stack: UdpStack | None = None
) -> NatProfile:
    """One detection, on real sockets by default: the probes and the verdict a detector runs,
    without the actor around them (a command that detects once needs no mailbox, and not
    importing the actor runtime starts it sooner: `tests/cli/test_startup.py`)."""
    evidence = await run_probes(stack or RealUdpStack(), observers, timeout)
    return classify(evidence).to_profile(time.time())


def describe(profile: NatProfile) -> str:
    """The profile for a person: the classic name first, then the RFC 4787 details."""
    lines = [
        f"NAT type:    {profile.nat_type}" + ("" if profile.nat_present else " (no NAT)"),
        f"public:      {profile.public_ip}:{profile.public_port}",
        f"mapping:     {profile.mapping} ({_MAPPING[profile.mapping]})",
        f"filtering:   {profile.filtering} ({_MAPPING[profile.filtering]})",
        f"allocation:  {profile.allocation} ({_ALLOCATION[profile.allocation]})"
        + (f", delta {profile.port_delta}" if profile.port_delta is not None else ""),
        f"hairpinning: {_yes_no(profile.hairpinning)}",
        f"confidence:  {profile.confidence}",
        "observers:   " + ", ".join(f"{ip}:{port}" for ip, port in profile.observers),
    ]
    return "\n".join(lines)


_MAPPING = {
    "ei": "endpoint-independent",
    "hd": "address-dependent",
    "pd": "address and port-dependent",
}
_ALLOCATION = {"pp": "port preservation", "pc": "port contiguity", "rd": "random"}


def _yes_no(value: bool | None) -> str:
    return "not measured" if value is None else ("yes" if value else "no")
