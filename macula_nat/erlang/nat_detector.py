"""The Erlang ``macula_nat_detector`` module's calls, on the running NAT system.

``await nat_detector.detect()`` is ``current_system().detector.detect()``; see
:class:`macula_nat.nat.detector.NatDetector` for each call's contract.
"""

from __future__ import annotations

from macula_nat.actors import ActorRef
from macula_nat.nat.profile import NatProfile
from macula_nat.net import Address
from macula_nat.system import current_system


async def detect(
    force: bool = False,
    timeout: float | None = None,
    observers: tuple[Address, ...] | None = None,
) -> NatProfile:
    """``macula_nat_detector:detect/0,1``: classify the NAT (a known profile unless ``force``)."""
    return await current_system().detector.detect(force, timeout, observers)


def get_local_profile() -> NatProfile:
    """``macula_nat_detector:get_local_profile/0``: the profile now, or ``NotDetected``."""
    return current_system().detector.get_local_profile()


def add_observation(ip: str, port: int) -> None:
    """``macula_nat_detector:add_observation/2``: a peer saw us at ``ip:port``."""
    current_system().detector.add_observation(ip, port)


def refresh() -> None:
    """``macula_nat_detector:refresh/0``: detect again in the background."""
    current_system().detector.refresh()


def subscribe(ref: ActorRef) -> None:
    """``macula_nat_detector:subscribe/1``: ``NatProfileChanged`` messages to ``ref``."""
    current_system().detector.subscribe(ref)


def unsubscribe(ref: ActorRef) -> None:
    """``macula_nat_detector:unsubscribe/1``."""
    current_system().detector.unsubscribe(ref)
