"""Port prediction for ``pc`` allocation and birthday-probing plans for ``rd`` allocation.

ARCHITECTURE.md section 7: "port prediction for ``pc`` allocation (try the next ports at the
measured delta); birthday probing for one random-port side (the hard side opens 256 sockets, the
easy side probes random ports: about 50% success at 174 probes, 98% at 1024, 99.97% at 2048)".
Everything here is pure: no sockets, no clocks; randomness comes from a caller's ``random.Random``.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence

import attrs

PORT_MIN = 1024
"""Lowest port a NAT hands out for mappings (ports below are privileged and rarely allocated)."""
PORT_MAX = 65535
PORT_SPACE = PORT_MAX - PORT_MIN + 1
"""64512: the ports a random allocator draws from (RFC 6056 section 2's ephemeral range)."""

DEFAULT_SOCKETS = 256
"""The hard side's socket count in the brief's numbers."""


def _check_port(port: int) -> None:
    if not PORT_MIN <= port <= PORT_MAX:
        raise ValueError(f"port {port!r} is outside {PORT_MIN}-{PORT_MAX}")


def wrap_port(port: int) -> int:
    """Fold any integer into ``PORT_MIN..PORT_MAX``, as a sequential allocator wraps around."""
    return (port - PORT_MIN) % PORT_SPACE + PORT_MIN


def measured_delta(observed: Sequence[int]) -> int | None:
    """The constant non-zero step between consecutive mapped ports, or None if there is none.

    A wrap past ``PORT_MAX`` counts as the same step (RFC 4787 section 4.2.2's contiguity).
    """
    if len(observed) < 2:
        return None
    half = PORT_SPACE // 2
    steps = {(b - a + half) % PORT_SPACE - half for a, b in itertools.pairwise(observed)}
    if len(steps) != 1:
        return None
    (step,) = steps
    return step or None


def predict_ports(observed: Sequence[int], delta: int, count: int) -> tuple[int, ...]:
    """The ``count`` ports a ``pc`` NAT should allocate next, nearest first.

    ``observed`` are mapped ports in the order they were allocated; the candidates continue from
    the last at ``delta``, wrapping within ``PORT_MIN..PORT_MAX``. Other traffic through the NAT
    consumes ports too, which is why more than one candidate is tried (section 7).
    """
    if not observed:
        raise ValueError("port prediction needs at least one observed mapped port")
    if delta == 0:
        raise ValueError("a port delta of 0 predicts nothing (that is port preservation)")
    if count < 0:
        raise ValueError(f"count must be >= 0, not {count}")
    for port in observed:
        _check_port(port)
    last = observed[-1]
    return tuple(wrap_port(last + delta * k) for k in range(1, count + 1))


def birthday_success(sockets: int, probes: int, port_space: int = PORT_SPACE) -> float:
    """The chance that ``probes`` distinct random ports hit one of ``sockets`` open mappings.

    The hard side holds ``sockets`` mappings at random ports of ``port_space``; the easy side
    probes distinct random ports. The miss chance is the hypergeometric
    ``prod_{i<probes} (1 - sockets / (port_space - i))``.
    """
    if not 0 <= sockets <= port_space:
        raise ValueError(f"sockets must be in 0..{port_space}, not {sockets}")
    if not 0 <= probes <= port_space:
        raise ValueError(f"probes must be in 0..{port_space}, not {probes}")
    if sockets == 0 or probes == 0:
        return 0.0
    if probes > port_space - sockets:
        return 1.0
    log_miss = sum(math.log1p(-sockets / (port_space - i)) for i in range(probes))
    return -math.expm1(log_miss)


def probes_for(
    target_probability: float, sockets: int = DEFAULT_SOCKETS, port_space: int = PORT_SPACE
) -> int:
    """The fewest probes for :func:`birthday_success` to reach ``target_probability``."""
    if not 0.0 <= target_probability <= 1.0:
        raise ValueError(f"target_probability must be in [0, 1], not {target_probability}")
    if not 1 <= sockets <= port_space:
        raise ValueError(f"sockets must be in 1..{port_space}, not {sockets}")
    if target_probability == 0.0:
        return 0
    if target_probability == 1.0:
        return port_space - sockets + 1
    target_log_miss = math.log1p(-target_probability)
    log_miss = 0.0
    for i in range(port_space - sockets + 1):
        log_miss += math.log1p(-sockets / (port_space - i))
        if log_miss <= target_log_miss:
            return i + 1
    return port_space - sockets + 1


def random_probe_ports(
    rng: random.Random, count: int, *, exclude: Sequence[int] = ()
) -> tuple[int, ...]:
    """``count`` distinct random ports in ``PORT_MIN..PORT_MAX`` for the easy side to probe.

    Deterministic for a seeded ``rng``; ports in ``exclude`` (already tried) are never drawn.
    """
    excluded = {p for p in exclude if PORT_MIN <= p <= PORT_MAX}
    available = PORT_SPACE - len(excluded)
    if not 0 <= count <= available:
        raise ValueError(f"count must be in 0..{available}, not {count}")
    if not excluded:
        return tuple(rng.sample(range(PORT_MIN, PORT_MAX + 1), count))
    pool = [p for p in range(PORT_MIN, PORT_MAX + 1) if p not in excluded]
    return tuple(rng.sample(pool, count))


@attrs.frozen
class BirthdayPlan:
    """How many sockets the hard side opens and how many ports the easy side probes."""

    sockets: int
    probes: int
    success_probability: float


def plan_birthday(
    target_probability: float = 0.98,
    *,
    sockets: int = DEFAULT_SOCKETS,
    max_probes: int = 2048,
    port_space: int = PORT_SPACE,
) -> BirthdayPlan:
    """The smallest probe count reaching the target, capped at ``max_probes`` (a rate bound)."""
    probes = min(probes_for(target_probability, sockets, port_space), max_probes)
    return BirthdayPlan(sockets, probes, birthday_success(sockets, probes, port_space))
