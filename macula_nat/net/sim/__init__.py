"""A simulated internet with RFC 4787 NAT boxes, driven by the Trio clock.

Build it inside ``open_internet``; every host is a :class:`~macula_nat.net.UdpStack`.
"""

from macula_nat.behavior import FilteringBehavior, MappingBehavior, PortAllocation
from macula_nat.net.sim.endpoint import SimEndpoint
from macula_nat.net.sim.firewall import FirewallBox
from macula_nat.net.sim.flow_table import FlowStatistics, FlowTable
from macula_nat.net.sim.host import SimHost
from macula_nat.net.sim.internet import Internet, InternetStatistics, open_internet
from macula_nat.net.sim.link import LinkProfile
from macula_nat.net.sim.nat_behavior import NatBehavior
from macula_nat.net.sim.nat_box import NatBox
from macula_nat.net.sim.nat_table import NatMapping, NatStatistics, NatTable
from macula_nat.net.sim.network import Network
from macula_nat.net.sim.presets import (
    ADDRESS_DEPENDENT,
    CARRIER_GRADE,
    EIM_RANDOM_PORT,
    FULL_CONE,
    PORT_RESTRICTED_CONE,
    PRESET_CHAINS,
    RESTRICTED_CONE,
    SYMMETRIC_RANDOM,
    SYMMETRIC_SEQUENTIAL,
    Preset,
    Site,
    add_site,
)

__all__ = [
    "ADDRESS_DEPENDENT",
    "CARRIER_GRADE",
    "EIM_RANDOM_PORT",
    "FULL_CONE",
    "PORT_RESTRICTED_CONE",
    "PRESET_CHAINS",
    "RESTRICTED_CONE",
    "SYMMETRIC_RANDOM",
    "SYMMETRIC_SEQUENTIAL",
    "FilteringBehavior",
    "FirewallBox",
    "FlowStatistics",
    "FlowTable",
    "Internet",
    "InternetStatistics",
    "LinkProfile",
    "MappingBehavior",
    "NatBehavior",
    "NatBox",
    "NatMapping",
    "NatStatistics",
    "NatTable",
    "Network",
    "PortAllocation",
    "Preset",
    "SimEndpoint",
    "SimHost",
    "Site",
    "add_site",
    "open_internet",
]
