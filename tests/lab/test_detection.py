"""Detection behind real NATs: our detector and coturn's, against our observer and coturn's server.

Every preset runs at once, one site each, in one lab per test: a site's NAT state is its own, and
each lab is fresh, so no run sees mappings an earlier one left behind.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lab.detection_support import (
    detect_everywhere,
    expected_everywhere,
    natdiscovery_expected,
    on_every_host,
    require_coturn,
    run_natdiscovery,
    start_coturn,
    start_our_observer,
)
from tests.nat_lab import UDP_PRESETS, open_lab

pytestmark = pytest.mark.lab


async def test_detector_classifies_every_preset_against_our_observer() -> None:
    async with open_lab(list(UDP_PRESETS)) as lab:
        observer = await start_our_observer(lab)
        assert await detect_everywhere(lab, observer) == expected_everywhere(lab)


async def test_detector_classifies_every_preset_against_coturn(tmp_path: Path) -> None:
    require_coturn()
    async with open_lab(list(UDP_PRESETS)) as lab:
        observer = await start_coturn(lab, tmp_path)
        assert await detect_everywhere(lab, observer) == expected_everywhere(lab)


async def test_natdiscovery_classifies_every_preset_against_our_observer() -> None:
    require_coturn()
    async with open_lab(list(UDP_PRESETS)) as lab:
        observer = await start_our_observer(lab)
        found = await on_every_host(lab.hosts, lambda host: run_natdiscovery(host, observer))
        # every preset, mapping included: our OTHER-ADDRESS for test II names the alternate IP
        # as coturn's does (see ObserverAddresses.other_address)
        assert found == {h.preset.value: natdiscovery_expected(h) for h in lab.hosts}


async def test_classification_survives_delay_and_loss() -> None:
    async with open_lab(list(UDP_PRESETS), delay_ms=20, loss=0.05) as lab:
        assert lab.impairment is not None
        observer = await start_our_observer(lab)
        assert await detect_everywhere(lab, observer) == expected_everywhere(lab)
