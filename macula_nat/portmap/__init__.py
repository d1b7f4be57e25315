"""Port mapping: ask the router to open a port (NAT-PMP, PCP, UPnP IGD).

Sans-IO codecs (:mod:`.natpmp`, :mod:`.pcp`, :mod:`.upnp`), the gateway's side of NAT-PMP and
PCP (:mod:`.server`, which the simulated NAT serves) and the epoch check (:mod:`.epoch`); the
Trio client that probes all three at once and keeps a mapping is :mod:`.client`
(``NatConfig(port_mapping=True)`` runs it under the NAT system).
"""

from macula_nat.portmap.client import (
    PortMapConfig,
    PortMapper,
    PortMapperStatistics,
    PortMapping,
    Protocol,
)
from macula_nat.portmap.errors import PortMapDecodeError

__all__ = [
    "PortMapConfig",
    "PortMapDecodeError",
    "PortMapper",
    "PortMapperStatistics",
    "PortMapping",
    "Protocol",
]
