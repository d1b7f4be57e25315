"""``make run``: two nodes behind every NAT type, and every pair of types connecting.

A gateway (a two-address STUN observer, a relay) and an embedded directory sit on a simulated
internet; two nodes per NAT preset, each behind a NAT of its own, detect their NAT, register with
the relay and publish their record. Then every pair of types connects, the same type included
(the first node of a type to the first of the other; to its twin for the same type), says hello
both ways and, when the strategy expects a punch, waits for the direct path. The table shows how
each pair ended and how fast, in simulated time: run it under
``trio.testing.MockClock(autojump_threshold=0)`` and it takes seconds of wall time. The caller
gets each line through ``emit`` (the library itself never prints).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final, Protocol

import attrs
import trio

from macula_nat.connection import Connection
from macula_nat.connection.link import ConnectionMethod
from macula_nat.demo.world import open_world
from macula_nat.nat.profile import NatProfile
from macula_nat.net.sim import Preset
from macula_nat.system import NatSystem
from macula_nat.traversal.strategy import Method, choose

__all__ = [
    "NAT_TYPES",
    "SHARES",
    "DemoObserver",
    "DemoResult",
    "PairResult",
    "connect_pair",
    "run",
    "weighted_direct_share",
]

logger = logging.getLogger(__name__)

PAIR_TIMEOUT: Final = 30.0
PUNCH_WAIT: Final = 10.0
"""Simulated seconds a pair on the relay waits for its punch before it counts as relayed."""

NAT_TYPES: Final = (
    Preset.OPEN_INTERNET,
    Preset.FULL_CONE,
    Preset.RESTRICTED_CONE,
    Preset.PORT_RESTRICTED_CONE,
    Preset.SYMMETRIC_RANDOM,
    Preset.SYMMETRIC_SEQUENTIAL,
    Preset.EIM_RANDOM_PORT,
    Preset.CGNAT_FULL_CONE,
)
SHARES: Final[Mapping[Preset, float]] = {
    # Quoted by the project's design brief (ARCHITECTURE.md section 9) as NATCracker's shares;
    # not checked against the paper here. They sum to 1 among themselves.
    Preset.FULL_CONE: 0.15,
    Preset.RESTRICTED_CONE: 0.37,
    Preset.PORT_RESTRICTED_CONE: 0.20,
    Preset.CGNAT_FULL_CONE: 0.16,
    # The source's "symmetric 12%", split between the two kinds by assumption: 2 to 1 for
    # random ports, the harder kind to punch.
    Preset.SYMMETRIC_RANDOM: 0.08,
    Preset.SYMMETRIC_SEQUENTIAL: 0.04,
    # Not in the source at all: assumptions, small on purpose. Hosts on a public address, and
    # NATs that keep one mapping per socket but pick its port at random.
    Preset.OPEN_INTERNET: 0.05,
    Preset.EIM_RANDOM_PORT: 0.03,
}
"""How common each NAT type the demo runs is, as relative weights (they sum to 1.08: a type's
share is its weight / 1.08). The headline's share weighs each pair by the product of its two
types' weights, so it is only as good as these figures; the comments say where each comes from."""


class DemoObserver(Protocol):
    """Hears the demo's progress as it happens (the status page's pair matrix does)."""

    def node_ready(self, name: str, nat_type: str) -> None:
        """The node ``name`` (:func:`node_name`, a twin's too) detected its NAT as
        ``nat_type``."""

    def pair_done(self, local: str, remote: str, method: str) -> None:
        """The pair of NAT types ``local`` and ``remote`` (by :func:`node_name`; the same name
        for a node and its twin) connected and ended ``method`` (direct, punched or relayed)."""


def node_name(preset: Preset, twin: bool = False) -> str:
    """A node's name: its NAT type, e.g. ``port-restricted-cone``; its twin (the second node
    behind a NAT of that type, for the same-type pair) is ``port-restricted-cone-2``."""
    name = preset.name.lower().replace("_", "-")
    return f"{name}-2" if twin else name


@attrs.frozen
class PairResult:
    """How ``local`` connecting to ``remote`` went; times are simulated seconds from the start
    of the connect."""

    local: Preset
    remote: Preset
    local_profile: NatProfile
    remote_profile: NatProfile
    method: ConnectionMethod
    """The connecting side's final method."""
    first_byte: float
    """Until the remote side received the first chat line."""
    direct_after: float | None
    """Until both ends left the relay; None when they did not."""
    upgrades: int
    """Relay-to-direct switches of the connecting side's link."""
    heard: tuple[str, str]
    """The chat lines received: by the remote side, then by the local side."""

    @property
    def direct(self) -> bool:
        """Whether the pair ended on a direct path (dialled or punched)."""
        return self.method is not ConnectionMethod.RELAYED


@attrs.frozen
class DemoResult:
    """Every pair's outcome, in connection order, and :func:`weighted_direct_share` of them."""

    rows: tuple[PairResult, ...]
    weighted_direct_share: float


def weighted_direct_share(
    rows: Iterable[PairResult], shares: Mapping[Preset, float] = SHARES
) -> float:
    """The share of connections that end direct, if NAT types occurred as often as ``shares``.

    Each row is an unordered pair of types: it counts ``share_a * share_b``, twice when the types
    differ (a and b meet as a-b and as b-a). A type without a share is an error, so that no pair
    drops out of the headline unseen. 0.0 for no rows.
    """
    total = direct = 0.0
    for row in rows:
        missing = {row.local, row.remote} - set(shares)
        if missing:
            names = ", ".join(sorted(node_name(preset) for preset in missing))
            raise ValueError(f"no share for {names}: weigh every type that runs")
        weight = shares[row.local] * shares[row.remote] * (1 if row.local == row.remote else 2)
        total += weight
        direct += weight if row.direct else 0.0
    return direct / total if total else 0.0


def _profile(system: NatSystem) -> NatProfile:
    profile: NatProfile | None = system.detector.profile.value
    if profile is None:
        raise RuntimeError(f"{system.node_id.short()} lost its NAT profile")
    return profile


def _off_relay(method: ConnectionMethod) -> bool:
    return method is not ConnectionMethod.RELAYED


async def _wait_direct(a: Connection, b: Connection, direct_at: list[float]) -> None:
    """Append the time both ends left the relay (each on its own proof), if within the wait."""
    with trio.move_on_after(PUNCH_WAIT):
        await a.method.wait_value(_off_relay)
        await b.method.wait_value(_off_relay)
        direct_at.append(trio.current_time())


async def connect_pair(
    local: NatSystem, remote: NatSystem, local_preset: Preset, remote_preset: Preset
) -> PairResult:
    """Connect ``local`` (behind ``local_preset``) to ``remote``, say hello both ways, wait
    (``PUNCH_WAIT`` at most) for both ends to leave the relay when the plan allows, close."""
    local_profile, remote_profile = _profile(local), _profile(remote)
    plan = choose(local_profile, remote_profile)
    started = trio.current_time()
    direct_at: list[float] = []
    with trio.fail_after(PAIR_TIMEOUT):
        connection = await local.connector.connect(remote.node_id)
        accepted = await remote.connector.accept()
        async with trio.open_nursery() as nursery:
            if plan.method is not Method.RELAY:
                nursery.start_soon(_wait_direct, connection, accepted, direct_at)
            await connection.send_message(f"hello from {node_name(local_preset)}".encode())
            heard_remote = (await accepted.receive_message()).decode()
            first_byte = trio.current_time() - started
            remote_name = node_name(remote_preset, twin=remote_preset == local_preset)
            await accepted.send_message(f"hello from {remote_name}".encode())
            heard_local = (await connection.receive_message()).decode()
        method = connection.info().connection_method
        link = connection.link
        upgrades = link.statistics().upgrades if link is not None else 0
        await connection.aclose()
        await accepted.aclose()
    logger.info("%s -> %s: %s (plan: %s)", local_preset, remote_preset, method, plan.reason)
    return PairResult(
        local=local_preset,
        remote=remote_preset,
        local_profile=local_profile,
        remote_profile=remote_profile,
        method=method,
        first_byte=first_byte,
        direct_after=direct_at[0] - started if direct_at else None,
        upgrades=upgrades,
        heard=(heard_remote, heard_local),
    )


_ROW: Final = "{:<22}  {:<22}  {:<8}  {:>10}  {:>10}  {:>8}"


def _format_row(row: PairResult) -> str:
    direct = "-" if row.direct_after is None else f"{row.direct_after * 1000:.0f}"
    return _ROW.format(
        node_name(row.local),
        node_name(row.remote, twin=row.local == row.remote),
        str(row.method),
        f"{row.first_byte * 1000:.0f}",
        direct,
        row.upgrades,
    )


def _summary(rows: Sequence[PairResult], share: float) -> tuple[str, str]:
    counts = {method: sum(r.method is method for r in rows) for method in ConnectionMethod}
    ended = ", ".join(f"{counts[m]} {m}" for m in ConnectionMethod)
    return (
        f"{len(rows)} pairs: {ended}",
        f"weighted direct share {share:.1%} over all {len(rows)} pairs (dialled or punched; each "
        "pair weighted by how common its two NAT types are: macula_nat.demo.nat.SHARES)",
    )


async def run(
    emit: Callable[[str], None], seed: int = 1, observer: DemoObserver | None = None
) -> DemoResult:
    """Run the demonstration on a simulated internet seeded with ``seed``; ``observer`` hears
    of each node and pair as it is done."""
    emit(
        f"A simulated internet: a gateway (STUN observer, relay) and {2 * len(NAT_TYPES)} nodes, "
        "two behind each NAT type, each behind a NAT of its own."
    )
    emit("Each node detects its NAT, registers with the relay and publishes its record; then")
    emit("every pair of NAT types connects (the same type too: a node and its twin), says hello")
    emit("both ways, and punches through where it can.")
    emit("Times are simulated milliseconds (20 ms round trip between nodes, 40 ms via the relay).")
    rows: list[PairResult] = []
    async with open_world(seed=seed) as world:
        emit("")
        emit(f"{'node':<22}  {'detected NAT type':<20}  public address")
        nodes: dict[tuple[Preset, bool], NatSystem] = {}
        for preset, twin in itertools.product(NAT_TYPES, (False, True)):
            name = node_name(preset, twin)
            node = nodes[preset, twin] = await world.node(preset, name)  # bounded inside
            profile = _profile(node)
            address = f"{profile.public_ip}:{profile.public_port}"
            emit(f"{name:<22}  {profile.nat_type:<20}  {address}")
            if observer is not None:
                observer.node_ready(name, str(profile.nat_type))
        emit("")
        emit(_ROW.format("from", "to", "method", "first byte", "to direct", "upgrades"))
        for local, remote in itertools.combinations_with_replacement(NAT_TYPES, 2):
            remote_node = nodes[remote, local == remote]
            row = await connect_pair(nodes[local, False], remote_node, local, remote)
            rows.append(row)
            emit(_format_row(row))
            if observer is not None:
                observer.pair_done(node_name(local), node_name(remote), str(row.method))
    share = weighted_direct_share(rows)
    emit("")
    for line in _summary(rows, share):
        emit(line)
    return DemoResult(tuple(rows), share)
