"""Lab tests need root and the kernel's netfilter; without them they skip, saying why."""

from __future__ import annotations

import pytest

from tests.nat_lab import lab_available


@pytest.fixture(autouse=True)
def _require_lab(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("lab") is None:
        return
    ok, reason = lab_available()
    if not ok:
        pytest.skip(f"NAT lab unavailable: {reason}")
