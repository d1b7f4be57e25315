"""What the detection probes observed, as frozen records: the input of `classify`.

Records hold raw observations only (who was asked, what came back, from where); every judgement
about them is made in :mod:`macula_nat.nat.classify`. Addresses are normalised ``(ip, port)``
tuples, so records compare equal whatever spelling the wire used.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from macula_nat.net.address import (
    Address,
    normalise_address,
    normalise_addresses,
    normalise_ip,
    optional_address,
)

__all__ = [
    "AllocationSample",
    "BindingObservation",
    "Evidence",
    "FilteringObservation",
    "HairpinObservation",
]


def _ips(value: Any) -> tuple[str, ...]:
    return tuple(normalise_ip(ip) for ip in value)


def _bindings(value: Iterable[BindingObservation]) -> tuple[BindingObservation, ...]:
    return tuple(value)


def _filtering(value: Iterable[FilteringObservation]) -> tuple[FilteringObservation, ...]:
    return tuple(value)


def _samples(value: Iterable[AllocationSample]) -> tuple[AllocationSample, ...]:
    return tuple(value)


@attrs.frozen
class BindingObservation:
    """One Binding transaction on the mapping socket (RFC 5780 tests I, II and III, and the
    plain Binding sent to every observer).

    ``mapped`` is None when no success response came back (no answer, or an error).
    """

    destination: Address = attrs.field(converter=normalise_address)
    mapped: Address | None = attrs.field(default=None, converter=optional_address)
    other_address: Address | None = attrs.field(default=None, converter=optional_address)
    """The response's OTHER-ADDRESS: the observer's alternate IP and port (RFC 5780)."""
    source: Address | None = attrs.field(default=None, converter=optional_address)
    """Where the response came from."""
    error: int | None = None
    """The STUN error code, if the observer answered with an error."""
    transmissions: int = 0
    elapsed: float | None = None
    """Seconds from the first transmission to the response."""

    @property
    def answered(self) -> bool:
        return self.mapped is not None

    @property
    def alternate(self) -> Address | None:
        """OTHER-ADDRESS if RFC 5780 tests can use it: it differs from the destination in IP
        and in port, in the same IP version. Else None."""
        other = self.other_address
        if other is None or self.mapped is None:
            return None
        ip, port = self.destination
        if other[0] == ip or other[1] == port or (":" in other[0]) != (":" in ip):
            return None
        return other


@attrs.frozen
class FilteringObservation:
    """One RFC 5780 filtering test: a Binding request with CHANGE-REQUEST from a fresh socket."""

    observer: Address = attrs.field(converter=normalise_address)
    change_ip: bool
    change_port: bool
    answered_from: Address | None = attrs.field(default=None, converter=optional_address)
    """Where the success response came from; None if none arrived."""
    error: int | None = None
    """The STUN error code, if the observer refused (420: it cannot change its address)."""


@attrs.frozen
class AllocationSample:
    """A fresh socket's first mapping, seen by an observer; samples are kept in send order."""

    local_port: int
    mapped: Address | None = attrs.field(default=None, converter=optional_address)


@attrs.frozen
class HairpinObservation:
    """Two fresh sockets sent probes to each other's mapped address (RFC 4787 hairpinning)."""

    received: bool
    """Whether either probe arrived."""
    source: Address | None = attrs.field(default=None, converter=optional_address)
    """Where the first arriving probe seemed to come from (REQ-9: the sender's mapped
    address)."""


@attrs.frozen(kw_only=True)
class Evidence:
    """Everything one detection run observed.

    ``bindings`` are the mapping socket's transactions, first the plain Binding to each
    observer in ``observers`` order, then RFC 5780 tests II and III. ``main_socket`` is True
    when that socket is the node's own (shared) socket rather than a fresh one, so peers see
    the same mapping. ``peer_observations`` are the node's public address as peers reported it,
    added after the run with `with_peer_observation`.
    """

    observers: tuple[Address, ...] = attrs.field(converter=normalise_addresses)
    local_ips: tuple[str, ...] = attrs.field(converter=_ips)
    local_port: int
    """The mapping socket's local port."""
    main_socket: bool = False
    bindings: tuple[BindingObservation, ...] = attrs.field(default=(), converter=_bindings)
    filtering: tuple[FilteringObservation, ...] = attrs.field(default=(), converter=_filtering)
    allocation: tuple[AllocationSample, ...] = attrs.field(default=(), converter=_samples)
    hairpin: HairpinObservation | None = None
    peer_observations: tuple[Address, ...] = attrs.field(default=(), converter=normalise_addresses)

    @property
    def answered(self) -> bool:
        """True if any observer answered anything with a mapped address."""
        return any(b.answered for b in self.bindings) or any(
            s.mapped is not None for s in self.allocation
        )

    def with_peer_observation(self, ip: str, port: int) -> Evidence:
        """This evidence plus the public address a peer reports seeing for this node."""
        reported = normalise_address((ip, port))
        return attrs.evolve(self, peer_observations=(*self.peer_observations, reported))
