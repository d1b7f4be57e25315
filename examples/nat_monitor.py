"""NAT change monitor: print this node's NAT type and public address whenever they change.

The guide's Example 2, a gen_server, ported as an actor (:class:`NatMonitor`): ``init``
subscribes with ``nat_detector.subscribe(self.ref)`` and reads the current profile;
``NatProfileChanged(old, new)`` arrives in ``handle_info``; its API is a call
(``GetProfile``: the profile now) and a cast (``ForceRefresh``: detect again now).

The detector classifies the NAT against the gateways' STUN observers at start, again every
``refresh_interval`` of the system (300 s by default) and whenever a peer reports that it sees
this node at an address that contradicts the profile. Only changes are published (the first
detection is not one, so ``old`` is always a profile): the monitor asks for the first profile
itself. ``--refresh`` forces a detection every few seconds on top of that.

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
from typing import Any

import attrs
import trio

from macula_nat import (
    Actor,
    ActorRef,
    DetectionError,
    NatConfig,
    NatProfile,
    NatProfileChanged,
    NotDetected,
    nat_detector,
    open_nat_system,
    run_actor,
)
from macula_nat.actors import Caller, Fail, Stop
from macula_nat.cli.arguments import address_argument


@attrs.frozen
class GetProfile:
    """Call: the profile now (``NotDetected`` raised in the caller before the first)."""


@attrs.frozen
class ForceRefresh:
    """Cast: detect again now (a change arrives in ``handle_info`` if there is one)."""


@attrs.frozen
class _Detected:
    """Cast to itself: the first detection's result (from the task that waited for it)."""

    profile: NatProfile | None
    error: str = ""


class _Tick:
    """The periodic refresh timer."""


class NatMonitor(Actor):
    """Prints the NAT profile once known, then each change; keeps the history of changes."""

    def __init__(
        self, *, refresh_every: float | None = None, emit: Callable[[str], None] = print
    ) -> None:
        self.refresh_every = refresh_every
        self.emit = emit
        self.profile: NatProfile | None = None
        self.changes: list[NatProfileChanged] = []

    async def init(self) -> None:
        nat_detector.subscribe(self.ref)
        try:
            self.profile = nat_detector.get_local_profile()
        except NotDetected:
            self.start_soon(self._first_detection, self.ref)
        else:  # detected before we subscribed: say what it is now
            self.emit(f"NAT now: {describe(self.profile)}")
        if self.refresh_every is not None:
            self.send_after(self.refresh_every, _Tick())

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        if isinstance(message, GetProfile):
            if self.profile is None:
                return Fail(NotDetected("the monitor has seen no profile yet"))
            return self.profile
        return await super().handle_call(message, caller)

    async def handle_cast(self, message: Any) -> Stop | None:
        if isinstance(message, ForceRefresh):
            nat_detector.refresh()  # a cast: the detection runs in the background
            return None
        if isinstance(message, _Detected):
            if message.profile is None:
                self.emit(f"NAT detection failed: {message.error}")
            elif self.profile is None:
                self.profile = message.profile
                self.emit(f"NAT detected: {describe(message.profile)}")
            return None
        return await super().handle_cast(message)

    async def handle_info(self, message: Any) -> Stop | None:
        if isinstance(message, NatProfileChanged):
            old, new = message.old, message.new  # old is a profile: read its fields freely
            self.profile = new
            self.changes.append(message)
            what = _what_changed(old, new)
            self.emit(f"NAT changed ({what}): {describe(old)} -> {describe(new)}")
            return None
        if isinstance(message, _Tick) and self.refresh_every is not None:
            nat_detector.refresh()
            self.send_after(self.refresh_every, _Tick())
            return None
        return await super().handle_info(message)

    async def terminate(self, reason: object) -> None:
        nat_detector.unsubscribe(self.ref)

    @staticmethod
    async def _first_detection(me: ActorRef) -> None:
        try:
            me.cast(_Detected(await nat_detector.detect()))
        except DetectionError as exc:
            me.cast(_Detected(None, str(exc) or type(exc).__name__))


async def main(
    *,
    refresh_every: float | None = None,
    emit: Callable[[str], None] = print,
    task_status: trio.TaskStatus[ActorRef] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a :class:`NatMonitor` on the running NAT system until cancelled;
    ``nursery.start(main, ...)`` returns its reference (call ``GetProfile``, cast
    ``ForceRefresh``)."""
    await run_actor(NatMonitor(refresh_every=refresh_every, emit=emit), task_status=task_status)


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
    async with open_nat_system(NatConfig(observers=args.gateway)):
        print("watching the NAT; Ctrl-C to stop")
        await main(refresh_every=args.refresh)


if __name__ == "__main__":
    arguments = build_parser().parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(run, arguments)
