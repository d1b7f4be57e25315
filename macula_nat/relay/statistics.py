"""What a relay has done: frozen snapshots, and the mutable counters behind them."""

from __future__ import annotations

import attrs

__all__ = ["DropStatistics", "FairnessStatistics", "RefusalStatistics", "RelayStatistics"]


@attrs.frozen
class DropStatistics:
    """Datagrams the relay dropped, by reason (each dropped datagram counts once)."""

    malformed: int
    """Not a relay or STUN datagram, or a relay frame that does not parse."""
    unauthenticated: int
    """Sealed frames of no registration, or whose tag did not verify; REGISTERs with a forged
    cookie or signature."""
    replayed: int
    """Authentic-looking frames whose counter was already seen or too old; stale REGISTERs."""
    unknown_session: int
    """Authentic DATA for a session that does not exist or that the sender is not part of."""
    rate_limited: int
    """Over a source's handshake/STUN rate or a registration's control-frame rate."""
    over_bandwidth: int
    """DATA beyond its session's token bucket."""
    expired: int
    """Frames of an expired registration or session, or for a peer no longer registered; path
    responses to no challenge on trial (spent, expired, or sent to another address)."""

    @property
    def total(self) -> int:
        return sum(attrs.astuple(self))


@attrs.frozen
class RefusalStatistics:
    """Registrations and session requests refused, by reason."""

    max_sessions_reached: int
    per_node_cap: int
    unknown_target: int
    self_target: int
    relay_disabled: int
    max_registrations: int
    stale_challenge: int
    source_share: int
    """The table was full and the asker's source already held its share."""


@attrs.frozen
class FairnessStatistics:
    """The per-source limits in force, and what they did (see :mod:`macula_nat.relay.shares`).

    A source is an IPv4 address or an IPv6 /64."""

    max_registrations: int
    registration_share: int
    """Registrations one source may hold while the table is full (``registration_source_share``
    of ``max_registrations``, at least 1)."""
    max_sessions: int
    session_share: int
    """Sessions one source may have started while all are open."""
    max_sessions_per_node: int
    largest_registrations: int
    """The most registrations one source holds now."""
    largest_sessions: int
    """The most sessions one source started of those open now."""
    registrations_evicted: int
    """Registrations ended (CLOSE ``source_share``) to make room for a source under its share."""
    sessions_evicted: int
    """Sessions ended (CLOSE ``source_share``) to make room for a source under its share."""
    path_challenges: int
    """Path challenges sent to a registered node's new source address."""
    path_validated: int
    """New source addresses adopted after their challenge was answered (also in ``roams``)."""


@attrs.frozen
class RelayStatistics:
    enabled: bool
    registrations: int
    """Nodes registered now."""
    sessions: int
    """Sessions open now."""
    registered: int
    """Registrations accepted since start (renewals included)."""
    challenges: int
    sessions_opened: int
    sessions_ended: int
    datagrams: int
    """Datagrams received."""
    relayed: int
    """DATA frames forwarded."""
    bytes_relayed: int
    """Payload bytes forwarded."""
    stun_answered: int
    roams: int
    """Registrations that followed their node to a new address (a NAT rebinding), each after
    the node answered a path challenge sent there."""
    send_failures: int
    drops: DropStatistics
    refusals: RefusalStatistics
    fairness: FairnessStatistics
    session_actors: int = 0
    """Session actors running (equal to ``sessions`` but for a moment after each change)."""
    directory_queries: int = 0
    """Directory queries taken from registered nodes (whose UDP is blocked), within their rate."""


@attrs.define
class Counters:
    """The live counters a :class:`RelayStatistics` snapshot is taken from."""

    registered: int = 0
    challenges: int = 0
    sessions_opened: int = 0
    sessions_ended: int = 0
    datagrams: int = 0
    relayed: int = 0
    bytes_relayed: int = 0
    stun_answered: int = 0
    roams: int = 0
    send_failures: int = 0
    malformed: int = 0
    unauthenticated: int = 0
    replayed: int = 0
    unknown_session: int = 0
    rate_limited: int = 0
    over_bandwidth: int = 0
    expired: int = 0
    registrations_evicted: int = 0
    sessions_evicted: int = 0
    path_challenges: int = 0
    path_validated: int = 0
    directory_queries: int = 0
    refusals: dict[str, int] = attrs.Factory(dict)

    def drops(self) -> DropStatistics:
        return DropStatistics(
            malformed=self.malformed,
            unauthenticated=self.unauthenticated,
            replayed=self.replayed,
            unknown_session=self.unknown_session,
            rate_limited=self.rate_limited,
            over_bandwidth=self.over_bandwidth,
            expired=self.expired,
        )

    def refusal_statistics(self) -> RefusalStatistics:
        fields = attrs.fields(RefusalStatistics)
        return RefusalStatistics(
            **{field.name: self.refusals.get(field.name, 0) for field in fields}
        )
