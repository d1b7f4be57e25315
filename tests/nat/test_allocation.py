"""Port allocation from ordered samples: sequential NATs are found, random pools rarely pass."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from macula_nat.behavior import PortAllocation
from macula_nat.nat.allocation import MAX_PORT_DELTA, MIN_STEPS, decide_allocation

LOCAL = 30000

deltas = st.integers(1, MAX_PORT_DELTA).flatmap(lambda d: st.sampled_from([d, -d]))


def ordered(ports: list[int | None]) -> list[tuple[int, int | None]]:
    return [(LOCAL + i, port) for i, port in enumerate(ports)]


@given(base=st.integers(2000, 60000), delta=deltas, count=st.integers(4, 10), data=st.data())
def test_a_sequential_nat_is_pc_with_its_step_whichever_samples_are_lost(
    base: int, delta: int, count: int, data: st.DataObject
) -> None:
    lost = data.draw(st.sets(st.integers(0, count - 1), max_size=count - MIN_STEPS - 1))
    ports: list[int | None] = [None if i in lost else base + i * delta for i in range(count)]
    verdict = decide_allocation(ordered(ports))
    assert (verdict.allocation, verdict.delta) == (PortAllocation.CONTIGUITY, delta)
    assert verdict.decisive == (count - len(lost) - 1 >= 5)


@given(base=st.integers(2000, 60000), delta=deltas, count=st.integers(7, 10), data=st.data())
def test_one_mapping_taken_by_other_traffic_in_the_burst_still_reads_as_pc(
    base: int, delta: int, count: int, data: st.DataObject
) -> None:
    taken = data.draw(st.integers(1, count - 1))  # samples from here on shift by one step
    ports = [base + (i + (i >= taken)) * delta for i in range(count)]
    verdict = decide_allocation(ordered(ports))
    assert (verdict.allocation, verdict.delta) == (PortAllocation.CONTIGUITY, delta)
    assert not verdict.decisive  # an odd step is evidence of something else going on


@given(count=st.integers(1, 10))
def test_ports_kept_are_preservation(count: int) -> None:
    verdict = decide_allocation(ordered([LOCAL + i for i in range(count)]))
    assert verdict.allocation is PortAllocation.PRESERVATION
    assert verdict.decisive == (count >= 4)


@given(ports=st.lists(st.integers(1, 65535), min_size=0, max_size=3))
def test_fewer_than_four_samples_never_say_pc(ports: list[int]) -> None:
    verdict = decide_allocation([(0, port) for port in ports])
    assert verdict.allocation is not PortAllocation.CONTIGUITY


def pc_rate(pool: int, samples: int, trials: int, seed: int) -> float:
    """How often random allocation from a ``pool``-port range is called ``pc``."""
    rng = random.Random(seed)
    passed = 0
    for _ in range(trials):
        ports = rng.sample(range(40000, 40000 + pool), samples)
        verdict = decide_allocation([(0, port) for port in ports])
        passed += verdict.allocation is PortAllocation.CONTIGUITY
    return passed / trials


@pytest.mark.parametrize(
    ("pool", "samples", "bound"),
    [
        # The module docstring's table, with room for the sampling error of 20,000 trials.
        (16, 4, 0.003),
        (16, 6, 0.0005),
        (16, 7, 0.0015),
        (100, 4, 0.0003),
        (100, 7, 0.0001),
        (1000, 7, 0.0001),
    ],
)
def test_random_allocation_in_a_small_pool_is_rarely_pc(
    pool: int, samples: int, bound: float
) -> None:
    assert pc_rate(pool, samples, trials=20_000, seed=pool * 100 + samples) <= bound


def test_the_sorted_gaps_case_of_issue_15_is_random() -> None:
    """Steps 6, 9, -20, -5 in a 100-port range: the old rule sorted the ports and saw two equal
    gaps of 5."""
    verdict = decide_allocation(ordered([40050, 40056, 40065, 40045, 40040]))
    assert verdict.allocation is PortAllocation.RANDOM
