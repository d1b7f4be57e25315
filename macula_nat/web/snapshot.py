"""What the status page shows, as JSON-able records built from the components' statistics.

Pure: every function here takes values (statistics records, profiles, connection facts) and the
current times, and returns plain dicts, lists, strings and numbers; no sockets, no clock. The
page's script renders them; the tests read them without a server.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from macula_nat.identity import NodeId
from macula_nat.nat.profile import NatProfile

__all__ = [
    "ConnectionFacts",
    "PendingFacts",
    "SessionFacts",
    "connection_row",
    "gateway_snapshot",
    "matrix_snapshot",
    "node_snapshot",
    "plain",
    "profile_view",
]

Json = Any
"""A value ``json.dumps`` takes: dicts with string keys, lists, strings, numbers, None."""


def plain(value: object) -> Json:
    """``value`` made JSON-able: attrs records become dicts (by field), node ids their text,
    addresses ``"ip:port"``, enums their value, other tuples and sets lists, non-finite floats
    None (JSON has no infinity)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if isinstance(value, NodeId):
        return value.text()
    if isinstance(value, NatProfile):
        return value.to_json()
    if attrs.has(type(value)):
        record: Any = type(value)
        return {f.name: plain(getattr(value, f.name)) for f in attrs.fields(record)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if _is_address(value):
        return address_text(value)  # type: ignore[arg-type]
    if isinstance(value, tuple | list | set | frozenset):
        return [plain(v) for v in value]
    return str(value)


def _is_address(value: object) -> bool:
    """Whether ``value`` is an ``(ip, port)`` pair."""
    return (
        isinstance(value, tuple)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
    )


def address_text(address: tuple[str, int] | None) -> str | None:
    """``"ip:port"`` (``"[ip]:port"`` for IPv6), or None."""
    if address is None:
        return None
    ip, port = address
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def profile_view(profile: NatProfile | None, now: float) -> Json:
    """The NAT profile for the page: its fields, the classic type name, and its age in seconds
    at wall time ``now`` (None before the first detection)."""
    if profile is None:
        return None
    view: dict[str, Json] = profile.to_json()
    view["nat_type"] = str(profile.nat_type)
    view["nat_present"] = profile.nat_present
    view["public"] = address_text((profile.public_ip, profile.public_port))
    view["mapped"] = address_text(profile.mapped)  # the router's port mapping, if any
    view["age"] = max(0.0, now - profile.detected_at)
    return view


@attrs.frozen
class ConnectionFacts:
    """What the page shows of one connection, gathered from ``Connection.info()``, its link's
    statistics and ``opened_at``."""

    peer: NodeId
    method: str
    rtt: float
    local_address: tuple[str, int]
    remote_address: tuple[str, int] | None
    opened_at: float
    sent: int = 0
    received: int = 0
    upgrades: int = 0
    fallbacks: int = 0
    held: int = 0


def connection_row(facts: ConnectionFacts, now: float) -> Json:
    """One row of the connections table; ``now`` is on the clock of ``opened_at``."""
    path = (
        f"{address_text(facts.local_address)} -> {address_text(facts.remote_address)}"
        if facts.remote_address is not None
        else f"{address_text(facts.local_address)} -> relay"
    )
    return {
        "peer": facts.peer.text(),
        "method": facts.method,
        "rtt_ms": round(facts.rtt * 1000, 1),
        "path": path,
        "datagrams_sent": facts.sent,
        "datagrams_received": facts.received,
        "bytes_held": facts.held,
        "upgrades": facts.upgrades,
        "fallbacks": facts.fallbacks,
        "age": max(0.0, now - facts.opened_at),
    }


@attrs.frozen
class PendingFacts:
    """A punch in flight (the coordinator's ``get_pending``)."""

    peer: NodeId
    attempt: int
    started_at: float
    targets: tuple[tuple[str, int], ...]


@attrs.frozen
class SessionFacts:
    """A relayed session (``RelayNode.sessions()``)."""

    id: int
    peer_a: NodeId
    peer_b: NodeId
    started_at: float
    bytes_transferred: int
    datagrams: int


def _pending_row(facts: PendingFacts, now: float) -> Json:
    return {
        "peer": facts.peer.text(),
        "attempt": facts.attempt,
        "targets": [address_text(t) for t in facts.targets],
        "age": max(0.0, now - facts.started_at),
    }


def _session_row(facts: SessionFacts, now: float) -> Json:
    return {
        "id": facts.id,
        "between": f"{facts.peer_a.short()} <-> {facts.peer_b.short()}",
        "bytes": facts.bytes_transferred,
        "datagrams": facts.datagrams,
        "age": max(0.0, now - facts.started_at),
    }


def _relay_section(statistics: object | None, sessions: Sequence[SessionFacts], now: float) -> Json:
    if statistics is None:
        return None
    figures = plain(statistics)
    return {
        "sessions": [_session_row(s, now) for s in sessions],
        "limits": figures.pop("fairness"),
        "figures": figures,
    }


def node_snapshot(
    *,
    node_id: NodeId,
    profile: NatProfile | None,
    wall_now: float,
    now: float,
    connections: Iterable[ConnectionFacts] = (),
    pending: Iterable[PendingFacts] = (),
    cache: object,
    detector: object,
    coordinator: object,
    registry: object,
    home_relay: object = None,
    relay: object | None = None,
    relay_sessions: Sequence[SessionFacts] = (),
    observer: object | None = None,
    dht: object | None = None,
    profile6: NatProfile | None = None,
    detector6: object | None = None,
) -> Json:
    """The page of a node: ``wall_now`` is the wall clock (profile ages), ``now`` Trio's
    (connection, punch and session ages). ``relay`` (its statistics) only when the node runs
    one; ``observer`` and ``dht`` only when it runs those; ``profile6`` and ``detector6`` (its
    IPv6 side's) only for a dual-stack node that classifies it."""
    public = None
    if profile is not None:
        public = address_text((profile.public_ip, profile.public_port))
    return {
        "kind": "node",
        "node_id": node_id.text(),
        "public_endpoint": public,
        "profile": profile_view(profile, wall_now),
        **({"profile6": profile_view(profile6, wall_now)} if detector6 is not None else {}),
        "home_relay": plain(home_relay),
        "connections": [connection_row(c, now) for c in connections],
        "pending": [_pending_row(p, now) for p in pending],
        "cache": plain(cache),
        "figures": {
            "detector": plain(detector),
            "coordinator": plain(coordinator),
            "relay registry": plain(registry),
            **({"IPv6 detector": plain(detector6)} if detector6 is not None else {}),
            **({"observer": plain(observer)} if observer is not None else {}),
            **({"DHT": plain(dht)} if dht is not None else {}),
        },
        "relay": _relay_section(relay, relay_sessions, now),
    }


def gateway_snapshot(
    *,
    node_id: NodeId,
    listen: tuple[str, int],
    relay_address: tuple[str, int],
    dht_address: tuple[str, int],
    now: float,
    relay: object,
    relay_sessions: Sequence[SessionFacts],
    registry: object,
    dht: object,
    observer: object | None,
) -> Json:
    """The page of a gateway: its addresses, relay (sessions, limits, traffic) and the
    observer's, registry's and DHT's figures (``observer`` None while it restarts)."""
    return {
        "kind": "gateway",
        "node_id": node_id.text(),
        "public_endpoint": address_text(listen),
        "addresses": {
            "observer": address_text(listen),
            "relay": address_text(relay_address),
            "DHT": address_text(dht_address),
        },
        "relay": _relay_section(relay, relay_sessions, now),
        "figures": {
            "observer": plain(observer) if observer is not None else "restarting",
            "relay registry": plain(registry),
            "DHT": plain(dht),
        },
    }


def matrix_snapshot(
    types: Sequence[str],
    detected: Mapping[str, str],
    methods: Mapping[tuple[str, str], str],
) -> Json:
    """The demo's pair matrix: ``types`` label rows and columns (a node per NAT type; the
    same-type pairs on the diagonal are a node and its twin), ``detected`` the NAT type each
    type's node detected, ``methods`` how each (from, to) pair ended. A cell is the method, or
    None while the pair has not connected."""
    return {
        "kind": "demo",
        "types": list(types),
        "detected": {t: detected.get(t) for t in types},
        "cells": [[methods.get((a, b)) or methods.get((b, a)) for b in types] for a in types],
        "done": sum(1 for _ in methods),
        "pairs": len(types) * (len(types) + 1) // 2,
    }
