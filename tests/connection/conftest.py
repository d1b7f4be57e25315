"""Connection tests run on each QUIC backend: ask for ``config`` (or ``quic_backend``)."""

from __future__ import annotations

import pytest

from macula_nat.connection import ConnectionConfig
from macula_nat.connection.backend import BACKENDS, BackendName


@pytest.fixture(params=BACKENDS)
def quic_backend(request: pytest.FixtureRequest) -> BackendName:
    """Each test that asks runs on each QUIC backend."""
    name: BackendName = request.param
    return name


@pytest.fixture
def config(quic_backend: BackendName) -> ConnectionConfig:
    """The default connection config on each backend."""
    return ConnectionConfig(quic_backend=quic_backend)
