"""A UDP datagram in flight through the simulated internet."""

from __future__ import annotations

import attrs

from macula_nat.net.address import Address

DEFAULT_TTL = 64


@attrs.frozen
class Datagram:
    """Source, destination and payload; ``ttl`` drops it after that many NAT traversals."""

    source: Address
    destination: Address
    payload: bytes
    ttl: int = DEFAULT_TTL
