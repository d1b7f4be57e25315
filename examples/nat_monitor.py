"""NAT change monitor: print this node's NAT type and public address whenever they change.

The detector classifies the NAT against the gateways' STUN observers at start, again every
``refresh_interval`` of the system (300 s by default) and whenever a peer reports that it sees
this node at an address that contradicts the profile. Each change is published as a
``NatProfileChanged(old, new)`` on the detector's ``changes`` topic: an actor subscribes with
``system.detector.subscribe(ref)``, a plain Trio task with ``detector.changes.subscription()``,
as here. ``--refresh`` forces a detection every few seconds on top of that.

Each line says what changed: the NAT type, the public IP or only the public port. The public
address is the node's own socket's, as peers see it; its port counts only behind an
endpoint-independent mapping (a symmetric NAT's port differs per destination, so a new one
there is no news), so a line means the NAT really moved: rebooted, renumbered, replaced.

    python examples/nat_monitor.py --gateway 203.0.113.10:3478 --refresh 30

Stop it with Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable

import trio

from macula_nat.cli.observe import address_argument
from macula_nat.nat.detector import NatDetector
from macula_nat.nat.profile import NatProfile
from macula_nat.system import NatConfig, NatSystem, open_nat_system


async def main(
    system: NatSystem,
    *,
    refresh_every: float | None = None,
    emit: Callable[[str], None] = print,
) -> None:
    """Print each change of ``system``'s NAT profile until cancelled; with ``refresh_every``,
    also start a detection that often."""
    async with system.detector.changes.subscription() as changes, trio.open_nursery() as nursery:
        current = system.detector.profile.value
        if current is not None:  # detected before we subscribed: say what it is now
            emit(f"NAT now: {describe(current)}")
        if refresh_every is not None:
            nursery.start_soon(_refresh, system.detector, refresh_every)
        async for change in changes:
            if change.old is None:
                emit(f"NAT detected: {describe(change.new)}")
            elif change.new is not current:
                what = _what_changed(change.old, change.new)
                emit(f"NAT changed ({what}): {describe(change.old)} -> {describe(change.new)}")


async def _refresh(detector: NatDetector, every: float) -> None:
    while True:
        await trio.sleep(every)
        detector.refresh()  # a cast: the detection runs in the background, changes arrive above


def _what_changed(old: NatProfile, new: NatProfile) -> str:
    if old.nat_type != new.nat_type or old.classification != new.classification:
        return "type"
    return "public IP" if old.public_ip != new.public_ip else "public port"


def describe(profile: NatProfile) -> str:
    ip, port = profile.public_address
    return f"{profile.nat_type} at {ip}:{port}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--gateway",
        type=address_argument,
        action="append",
        required=True,
        metavar="IP:PORT",
        help="a gateway's STUN observer, e.g. 203.0.113.10:3478 (repeat for more)",
    )
    parser.add_argument(
        "--refresh",
        type=float,
        metavar="S",
        help="also detect every S seconds (default: only on the system's own schedule)",
    )
    return parser


async def run(args: argparse.Namespace) -> None:
    """``main`` on the real network."""
    async with open_nat_system(NatConfig(observers=args.gateway)) as system:
        print("watching the NAT; Ctrl-C to stop")
        await main(system, refresh_every=args.refresh)


if __name__ == "__main__":
    arguments = build_parser().parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(run, arguments)
