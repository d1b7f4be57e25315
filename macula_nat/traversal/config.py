"""TraversalConfig: every time and bound of connecting and punching, in one place."""

from __future__ import annotations

import math

import attrs

from macula_nat.connection import ConnectionConfig
from macula_nat.connection.admission import HandshakeLimits

__all__ = ["TraversalConfig"]


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{attribute.name} must be a positive finite number, not {value!r}")


def _not_negative(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{attribute.name} must be a finite number >= 0, not {value!r}")


_at_least_one = attrs.validators.ge(1)


@attrs.frozen
class TraversalConfig:
    """Timing (seconds) and bounds of connecting and punching."""

    connection: ConnectionConfig = attrs.Factory(ConnectionConfig)
    direct_timeout: float = attrs.field(default=3.0, validator=_positive)
    """Longest a direct dial may take before the relay is tried."""
    relay_timeout: float = attrs.field(default=5.0, validator=_positive)
    """Longest a relay session request may take."""
    punch_window: float = attrs.field(default=2.0, validator=_positive)
    """How long one punch attempt probes (and waits for the peer's answer)."""
    signal_timeout: float = attrs.field(default=10.0, validator=_positive)
    """Longest the initiator waits for the peer's Answer (QUIC delivers it; after losses its
    retransmission backs off, so this is generous)."""
    probe_interval: float = attrs.field(default=0.05, validator=_positive)
    """Between two rounds of probes to every candidate within an attempt."""
    ipv6_head_start: float = attrs.field(default=0.25, validator=_not_negative)
    """Seconds a punch probes only the peer's IPv6 addresses before its IPv4 ones too (Happy
    Eyeballs, RFC 8305's default Connection Attempt Delay): where both work, IPv6 carries the
    connection; where IPv6 fails, this is all it costs (:mod:`.happy_eyeballs`)."""
    attempt_gap: float = attrs.field(default=0.5, validator=_positive)
    """Between two punch attempts."""
    max_punch_attempts: int = attrs.field(default=3, validator=_at_least_one)
    consent_interval: float = attrs.field(default=5.0, validator=_positive)
    """Between liveness probes on a punched path (well under NATs' 30 s mapping lifetime)."""
    consent_timeout: float = attrs.field(default=16.0, validator=_positive)
    """A punched path unanswered this long is dropped: the connection falls back to the relay."""
    retry_interval: float = attrs.field(default=60.0, validator=_positive)
    """After punching failed or the direct path died, the initiator tries again this much later."""
    predicted_ports: int = attrs.field(default=8, validator=_at_least_one)
    """Next ports offered at the measured delta when this node's NAT allocates sequentially."""
    mapping_reuse: float = attrs.field(default=60.0, validator=_positive)
    """A sequential node asks an observer for a fresh mapping before it punches (predictions
    start there); it asks the same observer address again only this much later, once the
    mapping it made has likely expired; meanwhile it asks from a new socket
    (:mod:`.fresh_mapping`)."""
    fresh_mapping_age: float = attrs.field(default=10.0, validator=_positive)
    """How long a fresh mapping serves as the base of predictions (else the relay's view)."""
    birthday_sockets: int = attrs.field(default=256, validator=_at_least_one)
    """Sockets the random-port side of a birthday punch opens."""
    birthday_probes: int = attrs.field(default=1024, validator=_at_least_one)
    """Random ports the other side probes (98% success with 256 sockets, ARCHITECTURE.md 7)."""
    birthday_rate: float = attrs.field(default=1000.0, validator=_positive)
    """Birthday datagrams a side sends per second, at most."""
    probe_answer_rate: float = attrs.field(default=50.0, validator=_positive)
    """Probe frames a second this node answers (an ACK, a probe back) per source IP (IPv6: per
    /64), sustained: a peer's punch reaches us from a few addresses every ``probe_interval``."""
    probe_answer_burst: float = attrs.field(default=300.0, validator=_positive)
    """Probe frames a source may have answered at once (a punch attempt's first rounds)."""
    probe_answer_sources: int = attrs.field(default=16_384, validator=_at_least_one)
    """Sources the probe-answer limit remembers; the least recently seen go first."""
    accept_backlog: int = attrs.field(default=64, validator=_at_least_one)
    inbound_handshakes: HandshakeLimits = attrs.Factory(HandshakeLimits)
    """QUIC handshakes other nodes start straight on this node's socket (a direct dial): at most
    ``max_handshakes`` (16) at once, ``per_source`` (4) from one proven source; past
    ``retry_threshold`` (4) unproven ones, Initials get a stateless Retry first, so spoofed
    Initials hold at most that many (:mod:`macula_nat.connection.gate`)."""
    max_relayed_handshakes: int = attrs.field(default=16, validator=_at_least_one)
    """Relay sessions other nodes opened to this one (only the home relay's are accepted) that
    may wait for their QUIC handshake at once; more are closed at once, so a home relay that
    floods session notices costs a bounded number of tasks."""
    record_ttl: float = attrs.field(default=600.0, validator=_positive)
    """Lifetime of the record this node publishes when its profile changes."""
