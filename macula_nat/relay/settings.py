"""What a relay runs with: its session limits (set by ``enable``) and its fixed configuration."""

from __future__ import annotations

import math
from typing import Final

import attrs

__all__ = ["MIB", "RelayConfig", "RelaySettings"]

MIB: Final = 1024 * 1024
_MIN_BURST: Final = 65536.0
"""A burst must hold the largest datagram, or that datagram could never pass."""


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{attribute.name} must be a positive finite number, not {value!r}")


def _optional_positive(
    _: object, attribute: attrs.Attribute[float | None], value: float | None
) -> None:
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{attribute.name} must be a positive finite number, not {value!r}")


def _fraction(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0 < value <= 1:
        raise ValueError(f"{attribute.name} must be in (0, 1], not {value!r}")


def _count(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or value < 0:
        raise ValueError(f"{attribute.name} must be an int >= 0, not {value!r}")


@attrs.frozen
class RelaySettings:
    """Limits on relayed sessions, as ``RelayNode.enable`` sets them.

    ``bandwidth_limit`` is the token-bucket rate of each session in payload bytes a second, both
    directions together; ``bandwidth_burst`` is the bucket's size (None: a tenth of a second at
    the limit, at least 64 KiB). A session ends after ``session_timeout`` seconds whatever it
    does, and after ``idle_timeout`` seconds without a forwarded datagram. A node takes part in
    at most ``max_sessions_per_node`` sessions at once (libp2p allows 16 circuits per peer).
    Once all ``max_sessions`` are open, one source (an IP, an IPv6 /64) may open more only while
    it started fewer than ``session_source_share`` of them (at least 1); a source under its share
    then takes a session from the source that started the most, if that one is over its share
    (:mod:`macula_nat.relay.shares`). Settings apply to sessions opened after they are set.
    """

    max_sessions: int = attrs.field(default=100, validator=_count)
    bandwidth_limit: float = attrs.field(default=float(MIB), validator=_positive)
    session_timeout: float = attrs.field(default=1800.0, validator=_positive)
    idle_timeout: float = attrs.field(default=300.0, validator=_positive)
    max_sessions_per_node: int = attrs.field(default=16, validator=_count)
    bandwidth_burst: float | None = attrs.field(default=None, validator=_optional_positive)
    session_source_share: float = attrs.field(default=0.1, validator=_fraction)

    @property
    def burst(self) -> float:
        """The bucket size in bytes."""
        if self.bandwidth_burst is not None:
            return self.bandwidth_burst
        return max(_MIN_BURST, self.bandwidth_limit / 10)


@attrs.frozen
class RelayConfig:
    """A relay's fixed configuration (every period here, so simulated tests can shrink them).

    Registrations (libp2p's reservations) last ``registration_ttl`` seconds (nodes register
    again before that) and end sooner when nothing authentic was heard from the node for
    ``liveness_timeout`` seconds. At most ``max_registrations`` nodes are registered at once.
    Challenge cookies live ``challenge_lifetime`` seconds. Each source IP (IPv6: each /64) may
    send ``handshake_rate`` handshake and STUN datagrams a second (bursts of
    ``handshake_burst``); each registration ``control_rate`` control frames a second (bursts of
    ``control_burst``). Expiry is checked every ``sweep_interval`` seconds.

    Once all ``max_registrations`` are taken, one source may register more nodes only while it
    holds fewer than ``registration_source_share`` of them (at least 1); a source under its
    share then takes a registration from the largest holder if that one is over its share.

    A registration moves to a new source address only once the node answers, from there, a
    path challenge sent there: each challenge carries a fresh single-use nonce valid for
    ``path_challenge_lifetime`` seconds, is sent again at most every ``path_challenge_interval``
    seconds, and a registration has at most ``max_path_challenges`` addresses on trial at once.
    """

    registration_ttl: float = attrs.field(default=3600.0, validator=_positive)
    liveness_timeout: float = attrs.field(default=60.0, validator=_positive)
    max_registrations: int = attrs.field(default=10_000, validator=_count)
    challenge_lifetime: float = attrs.field(default=30.0, validator=_positive)
    handshake_rate: float = attrs.field(default=20.0, validator=_positive)
    handshake_burst: float = attrs.field(default=60.0, validator=_positive)
    control_rate: float = attrs.field(default=50.0, validator=_positive)
    control_burst: float = attrs.field(default=100.0, validator=_positive)
    directory_rate: float = attrs.field(default=2.0, validator=_positive)
    """Directory queries a registration may send a second (a node whose UDP is blocked uses
    the relay's directory through them; each costs the relay DHT lookups)."""
    directory_burst: float = attrs.field(default=10.0, validator=_positive)
    max_sources: int = attrs.field(default=16_384, validator=_count)
    sweep_interval: float = attrs.field(default=5.0, validator=_positive)
    notice_interval: float = attrs.field(default=1.0, validator=_positive)
    """How often a session's target is told of it again until it acknowledges."""
    notice_attempts: int = attrs.field(default=5, validator=_count)
    registration_source_share: float = attrs.field(default=0.1, validator=_fraction)
    path_challenge_lifetime: float = attrs.field(default=5.0, validator=_positive)
    path_challenge_interval: float = attrs.field(default=1.0, validator=_positive)
    max_path_challenges: int = attrs.field(default=4, validator=_count)
