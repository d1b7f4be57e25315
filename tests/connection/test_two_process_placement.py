"""The two-process round trips of ``tests/bench/quic_backends.py`` in their pinned placements,
scaled down (a few round trips over 127.0.0.1): they complete for our driver and the minimal
one, the server child runs on its placement's CPU meanwhile, and the client's thread and the
child get their CPUs back after (the rest of the bench runs unpinned)."""

from __future__ import annotations

import os

import pytest

from tests.bench import quic_backends

pytestmark = pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="placements need sched_setaffinity and two CPUs",
)


def test_one_core_pins_both_to_one_cpu_and_two_cores_to_two() -> None:
    one = quic_backends._cpus("one core")
    two = quic_backends._cpus("two cores")
    allowed = os.sched_getaffinity(0)
    assert one is not None and two is not None
    assert one[0] == one[1] and one[0] in allowed
    assert two[0] != two[1] and set(two) <= allowed
    assert quic_backends._cpus(None) is None


@pytest.mark.parametrize("placement", quic_backends.PLACEMENTS)
@pytest.mark.parametrize("driver", ["aioquic", "minimal"])
async def test_pinned_round_trips_complete_and_every_process_gets_its_cpus_back(
    placement: str, driver: str
) -> None:
    before = os.sched_getaffinity(0)
    cpus = quic_backends._cpus(placement)
    assert cpus is not None
    async with quic_backends._round_trip_client(driver) as (round_trip, server):
        with quic_backends._placed(placement, [server]):
            assert os.sched_getaffinity(0) == {cpus[0]}
            assert os.sched_getaffinity(server) == {cpus[1]}
            for _ in range(5):
                await round_trip()
        assert os.sched_getaffinity(server) == before
        await round_trip()
    assert os.sched_getaffinity(0) == before
