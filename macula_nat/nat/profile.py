"""NatProfile: what a node knows about the NAT in front of it, as a frozen, serialisable value."""

from __future__ import annotations

import enum
from typing import Any

import attrs

from macula_nat.behavior import FilteringBehavior, MappingBehavior, PortAllocation
from macula_nat.net.address import (
    Address,
    normalise_addresses,
    normalise_ip,
    optional_address,
)


class Confidence(enum.StrEnum):
    """How far a profile can be trusted.

    ``high``: the full RFC 5780 tests ran (an observer with two addresses) and independent
    observers agree; ``medium``: one kind of evidence (RFC 5780 against one observer, or several
    single-address observers agreeing); ``low``: a single observer and a single test, or evidence
    that disagrees.
    """

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


def _port(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 0 <= value <= 65535:
        raise ValueError(f"{attribute.name} must be a port number (0-65535), not {value!r}")


@attrs.frozen
class NatProfile:
    """The detector's classification, in RFC 4787 terms, with the evidence behind it.

    ``mapping``, ``filtering``, ``allocation``, ``public_ip``, ``public_port``, ``detected_at``
    and ``confidence`` are the Erlang original's fields; the rest is what peers and users need
    beyond it. ``detected_at`` is a UNIX time in seconds.
    """

    mapping: MappingBehavior = attrs.field(converter=MappingBehavior)
    filtering: FilteringBehavior = attrs.field(converter=FilteringBehavior)
    allocation: PortAllocation = attrs.field(converter=PortAllocation)
    public_ip: str = attrs.field(converter=normalise_ip)
    public_port: int = attrs.field(validator=_port)
    detected_at: float
    confidence: Confidence = attrs.field(converter=Confidence)
    nat_present: bool = True
    """False when the observed public address is the node's own local address."""
    local_address: Address | None = attrs.field(default=None, converter=optional_address)
    hairpinning: bool | None = None
    """Whether the NAT loops back packets sent to its own public address; None: not measured."""
    port_delta: int | None = None
    """For ``pc`` allocation: the step between consecutive mappings (feeds port prediction)."""
    observers: tuple[Address, ...] = attrs.field(default=(), converter=normalise_addresses)
    """The observers whose answers this profile rests on."""
    mapped: Address | None = attrs.field(default=None, converter=optional_address)
    """The public address of a port mapping the router made on request (NAT-PMP, PCP or UPnP
    IGD) for the node's socket: it admits datagrams from anyone, as endpoint-independent
    filtering does for that one port. None: no mapping (or one whose external address STUN
    did not confirm)."""
    udp_blocked: bool = False
    """No observer or relay answers over UDP: the node is reached only through its relay over
    TCP/TLS (:class:`~macula_nat.relay.registry.TcpFallback`), so peers relay rather than
    punch. A profile made while UDP is blocked (:meth:`blocked`) has no measured behaviour."""

    @classmethod
    def blocked(cls, local_ip: str, detected_at: float) -> NatProfile:
        """The profile of a node no UDP answer has reached: nothing measured, so the most
        careful behaviour (address and port-dependent, random ports), the local IP and port 0
        as its address, low confidence, ``udp_blocked``."""
        return cls(
            MappingBehavior.ADDRESS_AND_PORT_DEPENDENT,
            FilteringBehavior.ADDRESS_AND_PORT_DEPENDENT,
            PortAllocation.RANDOM,
            local_ip,
            0,
            detected_at,
            Confidence.LOW,
            udp_blocked=True,
        )

    @property
    def public_address(self) -> Address:
        return (self.public_ip, self.public_port)

    @property
    def classification(self) -> tuple[MappingBehavior, FilteringBehavior, PortAllocation]:
        """The behaviour alone: what a ``nat_profile_changed`` compares, with the address."""
        return (self.mapping, self.filtering, self.allocation)

    @property
    def nat_type(self) -> str:
        """The classic name of this behaviour (RFC 3489's vocabulary), for people."""
        if self.udp_blocked:
            return "UDP blocked"
        if not self.nat_present:
            return "open internet" if self.filtering == "ei" else "firewalled, no NAT"
        if self.mapping != "ei":
            return "symmetric"
        return {
            "ei": "full cone",
            "hd": "restricted cone",
            "pd": "port-restricted cone",
        }[self.filtering]

    def changed_from(self, old: NatProfile | None) -> bool:
        """True when the behaviour, the public address or the port mapping differs (a
        ``nat_profile_changed``).

        The public port counts only where it means something to peers: behind an
        endpoint-independent mapping, seen from the same local socket both times. Another
        socket's port is another sample, and a symmetric NAT's port is per destination (the
        observer's), not the node's: without this every periodic detection was a "change"."""
        if old is None:
            return True
        if old.classification != self.classification or old.public_ip != self.public_ip:
            return True
        if old.mapped != self.mapped or old.udp_blocked != self.udp_blocked:
            return True
        return (
            self.mapping == "ei"
            and old.local_address == self.local_address
            and old.public_port != self.public_port
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_json` reads it back equal."""
        return {
            "mapping": str(self.mapping),
            "filtering": str(self.filtering),
            "allocation": str(self.allocation),
            "public_ip": self.public_ip,
            "public_port": self.public_port,
            "detected_at": self.detected_at,
            "confidence": str(self.confidence),
            "nat_present": self.nat_present,
            "nat_type": self.nat_type,
            "local_address": list(self.local_address) if self.local_address else None,
            "hairpinning": self.hairpinning,
            "port_delta": self.port_delta,
            "observers": [list(a) for a in self.observers],
            "mapped": list(self.mapped) if self.mapped else None,
            "udp_blocked": self.udp_blocked,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NatProfile:
        """Read :meth:`to_json`'s output; ValueError (with the field) on anything else."""
        fields = {f.name for f in attrs.fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in fields})
        except (TypeError, ValueError, KeyError) as exc:
            raise ValueError(f"not a NAT profile: {exc}") from exc
