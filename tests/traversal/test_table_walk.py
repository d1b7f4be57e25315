"""Every (mapping x filtering x allocation) behaviour against every other on the simulated
internet: the plan the strategy table picks for the detected profiles is the one that happens,
for all 378 pairs, none left out."""

from __future__ import annotations

import itertools

import pytest
from trio.testing import MockClock

from macula_nat.net.sim import NatBehavior

from .test_matrix import connect_as_planned
from .world import open_world

BEHAVIORS = [
    NatBehavior(mapping=m, filtering=f, allocation=a, port_delta=1)
    for m, f, a in itertools.product(("ei", "hd", "pd"), ("ei", "hd", "pd"), ("pp", "pc", "rd"))
]


PAIRS = list(itertools.combinations_with_replacement(range(len(BEHAVIORS)), 2))


def _name(b: NatBehavior) -> str:
    return f"{b.mapping}-{b.filtering}-{b.allocation}"


IDS = [f"{_name(BEHAVIORS[a])}+{_name(BEHAVIORS[b])}" for a, b in PAIRS]


@pytest.mark.parametrize(("first", "second"), PAIRS, ids=IDS)
async def test_every_behaviour_pair_connects_as_planned(
    first: int, second: int, autojump_clock: MockClock
) -> None:
    async with open_world(seed=first * 100 + second) as world:
        nodes = []
        for index, name in ((first, "alice"), (second, "bob")):
            nat = world.internet.public.add_nat(
                BEHAVIORS[index], name=f"{name}-nat", link=world.site_link
            )
            nodes.append(await world.node_at(nat.network.add_host(name=name)))
        await connect_as_planned(*nodes, 0.0)
