"""Port mapping (issue 13) on the simulated internet: the weighted direct share with and without
routers that map ports on request, and the NAT matrix's rows for a symmetric NAT with NAT-PMP
and with PCP.

Each ordered pair of the field's NAT types (``nat_demo.SHARES``) connects in a fresh world
as ``make run`` does (``nat_demo.connect_pair``), once with plain nodes and once with every
site's innermost router answering NAT-PMP and PCP and every node asking for a mapping (behind a
carrier's NAT the home router's mapping leads nowhere: STUN sees another public IP, so it is
not published and the pair does what it did without). The shares weigh the pairs as the
connection benchmark does. Then a symmetric NAT mapping with one protocol only meets every type,
both ways. Times are simulated (MockClock, in a thread of its own); UPnP IGD is not simulated
(its client is tested against a fake IGD on loopback and a real miniupnpd in the lab).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import attrs
import trio
import trio.testing

from macula_nat.demo.nat import SHARES, PairResult, connect_pair, node_name, weighted_direct_share
from macula_nat.net.sim import Preset
from macula_nat.system import NatSystem
from tests.portmap.world import mapped_node
from tests.traversal.world import World, open_world

from .timing import Figure

NAT_TYPES: Final = tuple(SHARES)
PAIRS: Final = len(NAT_TYPES) ** 2
"""The NAT types with a share in the field, as the connection benchmark weighs them."""
TAILSCALE_DIRECT: Final = 90.0
"""Tailscale: over 90% of connections direct (ARCHITECTURE.md section 9)."""
DCUTR_DIRECT: Final = 70.0
"""libp2p DCUtR: 70% +- 7% over 4.4 M attempts."""
SYMMETRIC: Final = Preset.SYMMETRIC_RANDOM
PROTOCOLS: Final = {
    "NAT-PMP": {"natpmp": True, "pcp": False},
    "PCP": {"natpmp": False, "pcp": True},
}


async def _node(
    world: World, preset: Preset, name: str, mapping: dict[str, bool] | None
) -> NatSystem:
    if mapping is None or preset is Preset.OPEN_INTERNET:  # no router to ask
        return await world.node(preset, name)
    system, _ = await mapped_node(world, preset, name, **mapping)
    return system


async def _pair(
    local: Preset,
    remote: Preset,
    seed: int,
    local_mapping: dict[str, bool] | None,
    remote_mapping: dict[str, bool] | None,
) -> PairResult:
    async with open_world(seed=seed) as world:
        alice = await _node(world, local, "alice", local_mapping)
        bob = await _node(world, remote, "bob", remote_mapping)
        return await connect_pair(alice, bob, local, remote)


@attrs.frozen
class _Measured:
    without: tuple[PairResult, ...]
    with_mapping: tuple[PairResult, ...]
    symmetric_rows: tuple[tuple[str, str, PairResult], ...]
    """(protocol, direction, pair) for the symmetric site mapping with one protocol."""


async def _measure() -> _Measured:
    both = {"natpmp": True, "pcp": True}
    pairs = [(a, b) for a in NAT_TYPES for b in NAT_TYPES]
    without = [await _pair(a, b, seed, None, None) for seed, (a, b) in enumerate(pairs)]
    with_mapping = [await _pair(a, b, seed, both, both) for seed, (a, b) in enumerate(pairs)]
    rows = []
    for name, protocol in PROTOCOLS.items():
        for seed, other in enumerate(NAT_TYPES):
            out = await _pair(SYMMETRIC, other, 200 + seed, protocol, None)
            rows.append((name, "dials", out))
            back = await _pair(other, SYMMETRIC, 300 + seed, None, protocol)
            rows.append((name, "dialled", back))
    return _Measured(tuple(without), tuple(with_mapping), tuple(rows))


def _in_own_run() -> _Measured:
    return trio.run(_measure, clock=trio.testing.MockClock(autojump_threshold=0))


def _direct_share(rows: Sequence[PairResult]) -> float:
    """Over ordered pairs: the mean of the two directions' shares (as ``connections`` does,
    since :func:`weighted_direct_share` weighs unordered pairs)."""
    order = NAT_TYPES.index
    forward = [r for r in rows if order(r.local) <= order(r.remote)]
    backward = [r for r in rows if order(r.local) >= order(r.remote)]
    return (weighted_direct_share(forward) + weighted_direct_share(backward)) / 2


def _relayed(rows: Sequence[PairResult]) -> str:
    names = [f"{node_name(r.local)}->{node_name(r.remote)}" for r in rows if not r.direct]
    return ", ".join(names) or "none"


async def run() -> list[Figure]:
    measured = await trio.to_thread.run_sync(_in_own_run)
    without = 100 * _direct_share(measured.without)
    with_mapping = 100 * _direct_share(measured.with_mapping)
    print(f"portmap: relayed without port mapping: {_relayed(measured.without)}", flush=True)
    print(f"portmap: relayed with port mapping: {_relayed(measured.with_mapping)}", flush=True)
    for protocol, direction, row in measured.symmetric_rows:
        print(
            f"portmap: NAT matrix row, symmetric with {protocol} {direction}: "
            f"{node_name(row.local)} -> {node_name(row.remote)}: {row.method}",
            flush=True,
        )
    direct_rows = sum(row.direct for _, _, row in measured.symmetric_rows)
    return [
        Figure(f"direct share, {PAIRS} NAT pairs (type-weighted), without mapping", without, "%"),
        Figure(
            f"direct share, {PAIRS} NAT pairs, with NAT-PMP/PCP, vs without",
            with_mapping,
            "%",
            without,
            "> 1x (symmetric pairs go direct)",
        ),
        Figure(
            f"direct share, {PAIRS} NAT pairs, with NAT-PMP/PCP, vs Tailscale",
            with_mapping,
            "%",
            TAILSCALE_DIRECT,
            ">= 95%",
        ),
        Figure(
            f"direct share, {PAIRS} NAT pairs, with NAT-PMP/PCP, vs DCUtR",
            with_mapping,
            "%",
            DCUTR_DIRECT,
            ">= 95%",
        ),
        Figure(
            "symmetric with NAT-PMP or PCP: pairs ending direct",
            direct_rows,
            "pairs",
            goal=f"all {len(measured.symmetric_rows)}",
        ),
    ]


if __name__ == "__main__":

    async def _main() -> None:
        for figure in await run():
            print(figure.render(), flush=True)

    trio.run(_main)
