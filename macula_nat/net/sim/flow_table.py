"""A stateful firewall's core: the flows inside hosts opened, and what they admit. No I/O.

A host with a global address (IPv6, mostly) has no NAT in front of it, only a firewall that
tracks connections, as home routers do for IPv6 (RFC 6092: "outbound-only" by default) and as
Linux does with ``ct state established,related accept`` and a drop of everything else. A flow is
the pair (inside endpoint, outside endpoint): the firewall admits a datagram from outside only
when the inside endpoint sent to exactly that outside endpoint within ``lifetime`` seconds, i.e.
address- and port-dependent filtering with the host's own address as its "mapping". Both
directions refresh a flow (conntrack does). Time is passed in, so the decisions are testable
without a clock.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import attrs

from macula_nat.net.address import Address

_Flow = tuple[Address, Address]


def _positive(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{attribute.name} must be a positive number of seconds, not {value!r}")


@attrs.frozen
class FlowStatistics:
    """Counters of one firewall since it was created; ``flows`` is the number alive now."""

    flows: int
    outbound: int
    admitted: int
    """Inbound datagrams a live flow admitted."""
    filtered: int
    """Inbound datagrams no live flow admitted (unsolicited, or an expired flow's)."""


@attrs.define(eq=False)
class FlowTable:
    """Live flows, least recently refreshed first, with their expiry times."""

    lifetime: float = attrs.field(default=30.0, validator=_positive)
    """Seconds a flow lives after its last datagram (conntrack's unreplied UDP timeout)."""
    _flows: OrderedDict[_Flow, float] = attrs.field(factory=OrderedDict, init=False)
    _outbound: int = attrs.field(default=0, init=False)
    _admitted: int = attrs.field(default=0, init=False)
    _filtered: int = attrs.field(default=0, init=False)

    def outbound(self, inside: Address, outside: Address, now: float) -> None:
        """``inside`` sends to ``outside``: the flow opens, or lives on."""
        self.expire(now)
        self._outbound += 1
        self._refresh((inside, outside), now)

    def inbound(self, outside: Address, inside: Address, now: float) -> bool:
        """Whether a datagram from ``outside`` to ``inside`` passes (it refreshes its flow)."""
        self.expire(now)
        flow = (inside, outside)
        if flow not in self._flows:
            self._filtered += 1
            return False
        self._admitted += 1
        self._refresh(flow, now)
        return True

    def expire(self, now: float) -> int:
        """Drop the flows idle for ``lifetime``; how many went."""
        gone = 0
        while self._flows:
            flow, expires_at = next(iter(self._flows.items()))
            if expires_at > now:
                break
            del self._flows[flow]
            gone += 1
        return gone

    def flows(self) -> list[tuple[Address, Address]]:
        """The live flows as (inside, outside), least recently refreshed first."""
        return list(self._flows)

    def statistics(self) -> FlowStatistics:
        return FlowStatistics(len(self._flows), self._outbound, self._admitted, self._filtered)

    def _refresh(self, flow: _Flow, now: float) -> None:
        self._flows[flow] = now + self.lifetime
        self._flows.move_to_end(flow)
