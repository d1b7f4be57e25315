"""The two-process round trip of ``tests/bench/quic_backends.py`` in its pinned placements,
scaled down (a few round trips over 127.0.0.1): the transfer completes for our driver and the
minimal one, the server child ran on its placement's CPU, and the client's thread gets its
CPUs back (the rest of the bench runs unpinned)."""

from __future__ import annotations

import math
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
async def test_a_pinned_round_trip_completes_and_unpins_the_client(
    monkeypatch: pytest.MonkeyPatch, placement: str, driver: str
) -> None:
    monkeypatch.setattr(quic_backends, "ROUND_TRIPS", 5)
    before = os.sched_getaffinity(0)
    transfer = await quic_backends._two_process(driver, "rtt", placement)
    assert 0 < transfer.seconds < math.inf
    cpus = quic_backends._cpus(placement)
    assert cpus is not None and transfer.server_cpus == {cpus[1]}
    assert os.sched_getaffinity(0) == before
