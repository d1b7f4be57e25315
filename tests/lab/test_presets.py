"""Every NAT preset really behaves as named, measured with an independent UDP probe."""

from __future__ import annotations

import attrs
import pytest

from tests.lab.helpers import classify, measure, start_reflector
from tests.nat_lab import UDP_PRESETS, NatPreset, open_lab

pytestmark = pytest.mark.lab


@pytest.mark.parametrize("preset", UDP_PRESETS, ids=lambda p: p.value)
async def test_preset_behaves_as_named(preset: NatPreset) -> None:
    async with open_lab([preset]) as lab:
        await start_reflector(lab)
        host = lab.sites[0].host
        result = await measure(lab, host)
        assert classify(lab, host, result) == attrs.asdict(preset.expected), result
