"""A real-NAT lab: Linux network namespaces with nftables NAT routers (root only).

Usage::

    async with open_lab([NatPreset.FULL_CONE, NatPreset.SYMMETRIC], delay_ms=20) as lab:
        host = lab.sites[0].host
        result = await host.run_python(["-c", "print('hello from', 'inside')"])
        server = await lab.server.start_process(["turnserver", ...])

:func:`lab_available` says whether this machine can run it, and why not.
"""

from tests.nat_lab.availability import lab_available, netem_available
from tests.nat_lab.commands import LabError
from tests.nat_lab.lab import open_lab, remove_leftovers
from tests.nat_lab.nodes import Host, Lab, Node, Router, Server, Site
from tests.nat_lab.presets import UDP_PRESETS, NatClassification, NatPreset
from tests.nat_lab.topology import SERVER_IPS, SiteConfig

__all__ = [
    "SERVER_IPS",
    "UDP_PRESETS",
    "Host",
    "Lab",
    "LabError",
    "NatClassification",
    "NatPreset",
    "Node",
    "Router",
    "Server",
    "Site",
    "SiteConfig",
    "lab_available",
    "netem_available",
    "open_lab",
    "remove_leftovers",
]
