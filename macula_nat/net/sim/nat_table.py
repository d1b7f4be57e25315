"""The NAT core: mapping table, port allocation, filtering decision and expiry, without I/O.

Time is a number passed in by the caller (``trio.current_time()`` in the simulation, anything
in tests), randomness a ``random.Random`` passed in, so every decision is reproducible.

Model (RFC 4787): a mapping binds an internal endpoint, and under ``hd``/``pd`` mapping also a
remote IP or remote endpoint, to one external address that no other mapping shares. Each mapping
remembers the remote endpoints it sent to; filtering admits an inbound datagram to the mapping's
external address by comparing its source with them. Those permissions live and die with their
mapping. An inbound datagram a mapping admits opens a session, as a connection-tracking NAT
does: the internal endpoint's answers to that remote endpoint leave through the same mapping,
even where ``hd``/``pd`` mapping would have made a new one (so a node behind ``pd`` mapping and
``ei`` filtering can be dialled directly). Several public IPs are pooled "paired" (REQ-2): all
mappings of one internal IP use the same public IP, assigned round robin on its first mapping.
"""

from __future__ import annotations

import logging
import random
from collections import OrderedDict
from collections.abc import Sequence

import attrs

from macula_nat.behavior import FilteringBehavior, MappingBehavior, PortAllocation
from macula_nat.net.address import Address, normalise_ip
from macula_nat.net.sim.nat_behavior import NatBehavior

logger = logging.getLogger(__name__)

_RANDOM_PORT_TRIES = 32
"""Random picks before falling back to a scan; the scan keeps allocation bounded when full."""

_MappingKey = tuple[Address, str | None, int | None]


@attrs.frozen
class NatStatistics:
    """Counters of one NAT since it was created; ``mappings`` is the number alive now."""

    mappings: int
    mappings_created: int
    mappings_expired: int
    outbound_translated: int
    inbound_translated: int
    hairpinned: int
    filtered: int
    """Inbound datagrams to a live mapping that filtering refused."""
    unmapped: int
    """Inbound datagrams to an external address with no live mapping."""
    exhausted: int
    """Outbound datagrams dropped because no external port was free."""
    hairpin_refused: int
    """Datagrams from inside to a public address of this NAT with hairpinning off."""

    @property
    def dropped(self) -> int:
        """All datagrams this NAT dropped, for whatever reason."""
        return self.filtered + self.unmapped + self.exhausted + self.hairpin_refused


@attrs.frozen
class NatMapping:
    """A snapshot of one live mapping."""

    internal: Address
    external: Address
    remote_ip: str | None
    """The remote IP the mapping is bound to (``hd`` and ``pd`` mapping), else None."""
    remote_port: int | None
    """The remote port the mapping is bound to (``pd`` mapping), else None."""
    permissions: frozenset[Address]
    """Remote endpoints this mapping sent to."""
    expires_at: float
    requested: bool = False
    """Made on request (NAT-PMP, PCP): it admits any remote until it expires."""


@attrs.define(eq=False)
class _Mapping:
    key: _MappingKey
    internal: Address
    external: Address
    last_active: float
    permissions: set[Address] = attrs.Factory(set)
    permitted_ips: set[str] = attrs.Factory(set)
    sessions: set[Address] = attrs.Factory(set)
    """Remote endpoints whose inbound datagrams this mapping admitted: answers go through it."""
    until: float | None = None
    """A requested mapping's expiry (it admits anyone until then), else None."""


class NatTable:
    """Translation state of one NAT box.

    ``now`` arguments must never decrease from one call to the next.
    """

    def __init__(
        self, behavior: NatBehavior, public_ips: Sequence[str], rng: random.Random
    ) -> None:
        if not public_ips:
            raise ValueError("a NAT needs at least one public IP")
        self._behavior = behavior
        self._public_ips = tuple(dict.fromkeys(normalise_ip(ip) for ip in public_ips))
        self._rng = rng
        self._now = float("-inf")
        self._by_key: OrderedDict[_MappingKey, _Mapping] = OrderedDict()
        """Ordered by last activity, least recent first, so expiry pops from the front."""
        self._by_external: dict[Address, _Mapping] = {}
        self._sessions: dict[tuple[Address, Address], _Mapping] = {}
        self._requested: dict[Address, _Mapping] = {}
        """Mappings made on request (port mapping protocols), by internal endpoint."""
        """(internal, remote) -> the mapping that admitted the remote's datagram."""
        self._used_ports: dict[str, set[int]] = {ip: set() for ip in self._public_ips}
        self._last_port: dict[str, int] = {}
        self._paired_ip: dict[str, str] = {}
        self._created = 0
        self._expired = 0
        self._outbound = 0
        self._inbound = 0
        self._hairpinned = 0
        self._filtered = 0
        self._unmapped = 0
        self._exhausted = 0
        self._hairpin_refused = 0

    @property
    def behavior(self) -> NatBehavior:
        return self._behavior

    @property
    def public_ips(self) -> tuple[str, ...]:
        return self._public_ips

    def outbound(self, source: Address, destination: Address, now: float) -> Address | None:
        """Translate an outbound datagram: return its external source, or None if dropped."""
        self.expire(now)
        key = self._key(source, destination)
        mapping = self._sessions.get((source, destination)) or self._by_key.get(key)
        if mapping is None:
            external = self._allocate(source)
            if external is None:
                self._exhausted += 1
                logger.debug("no free external port for %s -> %s", source, destination)
                return None
            mapping = _Mapping(key=key, internal=source, external=external, last_active=now)
            self._by_key[key] = mapping
            self._by_external[external] = mapping
            self._used_ports[external[0]].add(external[1])
            self._created += 1
            logger.debug("new mapping %s -> %s for %s", source, external, destination)
        mapping.permissions.add(destination)
        mapping.permitted_ips.add(destination[0])
        self._refresh(mapping, now)
        self._outbound += 1
        return mapping.external

    def inbound(self, source: Address, destination: Address, now: float) -> Address | None:
        """Translate an inbound datagram: return the internal destination, or None if dropped."""
        self.expire(now)
        mapping = self._by_external.get(destination)
        if mapping is None:
            self._unmapped += 1
            logger.debug("inbound %s -> %s: no mapping", source, destination)
            return None
        if not self._admits(mapping, source):
            self._filtered += 1
            logger.debug("inbound %s -> %s: filtered", source, destination)
            return None
        if self._behavior.inbound_refresh:
            self._refresh(mapping, now)
        if mapping.key != self._key(mapping.internal, source):
            mapping.sessions.add(source)
            self._sessions[(mapping.internal, source)] = mapping
        self._inbound += 1
        return mapping.internal

    def hairpin(
        self, source: Address, destination: Address, now: float
    ) -> tuple[Address, Address] | None:
        """Route a datagram from inside to one of this NAT's public addresses back inside.

        Returns ``(external source, internal destination)``: the receiver sees the sender's
        external address (RFC 4787 REQ-9), and the destination mapping's filtering applies.
        """
        if not self._behavior.hairpinning:
            self._hairpin_refused += 1
            logger.debug("hairpin %s -> %s refused", source, destination)
            return None
        external_source = self.outbound(source, destination, now)
        if external_source is None:
            return None
        internal_destination = self.inbound(external_source, destination, now)
        if internal_destination is None:
            return None
        self._hairpinned += 1
        return external_source, internal_destination

    def map_port(
        self, internal: Address, suggested_port: int, lifetime: float, now: float
    ) -> Address | None:
        """A mapping on request (NAT-PMP, PCP): ``internal`` is reachable from anyone at the
        returned external address until ``now + lifetime``, as a router's port forward. A
        renewal keeps the address; a new one takes ``suggested_port`` when free. None when no
        port is free."""
        self.expire(now)
        mapping = self._requested.get(internal)
        if mapping is None:
            ip = self._paired(internal)
            used = self._used_ports[ip]
            low, high = self._behavior.port_range
            port: int | None = suggested_port
            if not (low <= suggested_port <= high and suggested_port not in used):
                port = self._random_port(used)
            if port is None:
                self._exhausted += 1
                return None
            external = (ip, port)
            key: _MappingKey = (internal, "requested", port)
            mapping = _Mapping(key=key, internal=internal, external=external, last_active=now)
            self._requested[internal] = mapping
            self._by_external[external] = mapping
            used.add(port)
            self._created += 1
            logger.debug("requested mapping %s -> %s for %.0f s", internal, external, lifetime)
        mapping.until = now + lifetime
        mapping.last_active = now
        return mapping.external

    def unmap_port(self, internal: Address, now: float) -> bool:
        """Delete ``internal``'s requested mapping; whether there was one."""
        self.expire(now)
        mapping = self._requested.pop(internal, None)
        if mapping is None:
            return False
        self._drop_requested(mapping)
        return True

    def _drop_requested(self, mapping: _Mapping) -> None:
        del self._by_external[mapping.external]
        self._used_ports[mapping.external[0]].discard(mapping.external[1])
        self._end_sessions(mapping)
        logger.debug("requested mapping %s -> %s ended", mapping.internal, mapping.external)

    def expire(self, now: float) -> int:
        """Remove mappings idle for the mapping lifetime (requested ones: past their lifetime);
        return how many."""
        if now < self._now:
            raise ValueError(f"time went backwards: {now} < {self._now}")
        self._now = now
        lifetime = self._behavior.mapping_lifetime
        expired = 0
        for internal, mapping in list(self._requested.items()):
            if mapping.until is not None and now >= mapping.until:
                del self._requested[internal]
                self._drop_requested(mapping)
                expired += 1
        for _ in range(len(self._by_key)):
            mapping = next(iter(self._by_key.values()))
            if now - mapping.last_active < lifetime:
                break
            del self._by_key[mapping.key]
            del self._by_external[mapping.external]
            self._used_ports[mapping.external[0]].discard(mapping.external[1])
            self._end_sessions(mapping)
            expired += 1
            logger.debug("mapping %s -> %s expired", mapping.internal, mapping.external)
        self._expired += expired
        return expired

    def rebind(self) -> int:
        """Forget every mapping, keeping its public port taken: each inside endpoint's next
        datagram gets a new public port, as after a NAT reboot (RFC 4787's "NAT rebinding").
        Returns how many mappings were dropped."""
        dropped = len(self._by_key) + len(self._requested)
        self._by_key.clear()
        self._by_external.clear()
        self._sessions.clear()
        self._requested.clear()
        self._expired += dropped
        return dropped

    def mappings(self) -> list[NatMapping]:
        """Snapshots of the live mappings, least recently refreshed first."""
        lifetime = self._behavior.mapping_lifetime
        return [
            NatMapping(
                internal=mapping.internal,
                external=mapping.external,
                remote_ip=mapping.key[1],
                remote_port=mapping.key[2],
                permissions=frozenset(mapping.permissions),
                expires_at=mapping.last_active + lifetime,
            )
            for mapping in self._by_key.values()
        ] + [
            NatMapping(
                internal=mapping.internal,
                external=mapping.external,
                remote_ip=None,
                remote_port=None,
                permissions=frozenset(mapping.permissions),
                expires_at=mapping.until if mapping.until is not None else mapping.last_active,
                requested=True,
            )
            for mapping in self._requested.values()
        ]

    def statistics(self) -> NatStatistics:
        return NatStatistics(
            mappings=len(self._by_key) + len(self._requested),
            mappings_created=self._created,
            mappings_expired=self._expired,
            outbound_translated=self._outbound,
            inbound_translated=self._inbound,
            hairpinned=self._hairpinned,
            filtered=self._filtered,
            unmapped=self._unmapped,
            exhausted=self._exhausted,
            hairpin_refused=self._hairpin_refused,
        )

    def _key(self, source: Address, destination: Address) -> _MappingKey:
        mapping = self._behavior.mapping
        if mapping is MappingBehavior.ENDPOINT_INDEPENDENT:
            return source, None, None
        if mapping is MappingBehavior.ADDRESS_DEPENDENT:
            return source, destination[0], None
        return source, destination[0], destination[1]

    def _admits(self, mapping: _Mapping, source: Address) -> bool:
        if mapping.until is not None:
            return True  # a requested mapping: a port forward
        filtering = self._behavior.filtering
        if filtering is FilteringBehavior.ENDPOINT_INDEPENDENT:
            return True
        if filtering is FilteringBehavior.ADDRESS_DEPENDENT:
            return source[0] in mapping.permitted_ips
        return source in mapping.permissions

    def _end_sessions(self, mapping: _Mapping) -> None:
        for remote in mapping.sessions:
            if self._sessions.get((mapping.internal, remote)) is mapping:
                del self._sessions[(mapping.internal, remote)]

    def _refresh(self, mapping: _Mapping, now: float) -> None:
        mapping.last_active = now
        if mapping.until is None:  # a requested mapping lives its lifetime, not by traffic
            self._by_key.move_to_end(mapping.key)

    def _paired(self, internal: Address) -> str:
        ip = self._paired_ip.get(internal[0])
        if ip is None:
            ip = self._public_ips[len(self._paired_ip) % len(self._public_ips)]
            self._paired_ip[internal[0]] = ip
        return ip

    def _allocate(self, internal: Address) -> Address | None:
        ip = self._paired(internal)
        used = self._used_ports[ip]
        allocation = self._behavior.allocation
        low, high = self._behavior.port_range
        port: int | None
        if allocation is PortAllocation.PRESERVATION:
            wanted = internal[1]
            port = wanted if low <= wanted <= high and wanted not in used else None
            if port is None:
                port = self._random_port(used)
        elif allocation is PortAllocation.CONTIGUITY:
            port = self._contiguous_port(ip, used)
        else:
            port = self._random_port(used)
        return None if port is None else (ip, port)

    def _random_port(self, used: set[int]) -> int | None:
        low, high = self._behavior.port_range
        for _ in range(_RANDOM_PORT_TRIES):
            port = self._rng.randint(low, high)
            if port not in used:
                return port
        return self._scan(self._rng.randint(low, high), 1, used)

    def _contiguous_port(self, ip: str, used: set[int]) -> int | None:
        low, high = self._behavior.port_range
        last = self._last_port.get(ip)
        start = self._rng.randint(low, high) if last is None else last + self._behavior.port_delta
        port = self._scan(start, self._behavior.port_delta, used)
        if port is None:
            port = self._scan(start, 1, used)
        if port is not None:
            self._last_port[ip] = port
        return port

    def _scan(self, start: int, step: int, used: set[int]) -> int | None:
        """First free port of ``start, start + step, ...`` wrapped into the port range."""
        low, high = self._behavior.port_range
        size = high - low + 1
        for index in range(size):
            port = low + (start - low + index * step) % size
            if port not in used:
                return port
        return None
