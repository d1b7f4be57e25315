"""Link sampling: delay bounds, loss, validation."""

from __future__ import annotations

import random

import pytest

from macula_nat.net.sim import LinkProfile


def test_a_clean_link_delays_by_its_latency_exactly() -> None:
    rng = random.Random(1)
    assert {LinkProfile(latency=0.25).sample(rng) for _ in range(100)} == {0.25}


def test_jitter_adds_up_to_its_amount() -> None:
    rng = random.Random(2)
    delays = [LinkProfile(latency=0.1, jitter=0.05).sample(rng) for _ in range(1000)]

    assert all(d is not None and 0.1 <= d < 0.15 for d in delays)
    assert len(set(delays)) > 900


@pytest.mark.parametrize("loss", [0.0, 0.3, 1.0])
def test_loss_probability(loss: float) -> None:
    rng = random.Random(3)
    lost = sum(LinkProfile(loss=loss).sample(rng) is None for _ in range(10_000))

    assert abs(lost / 10_000 - loss) < 0.02


@pytest.mark.parametrize(
    "options", [{"latency": -1.0}, {"jitter": -0.1}, {"loss": 1.5}, {"loss": float("nan")}]
)
def test_nonsense_is_rejected(options: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        LinkProfile(**options)
