"""RFC 4787 vocabulary shared by NAT profiles, the simulated internet and the lab.

The values are the short codes the Erlang original's profiles use ("ei", "hd", "pd"; "pp", "pc",
"rd"); being StrEnums they compare equal to those strings and serialise as them.
"""

from __future__ import annotations

from enum import StrEnum


class MappingBehavior(StrEnum):
    """When a NAT reuses a mapping (RFC 4787 section 4.1); values are the profile's codes."""

    ENDPOINT_INDEPENDENT = "ei"
    ADDRESS_DEPENDENT = "hd"
    ADDRESS_AND_PORT_DEPENDENT = "pd"


class FilteringBehavior(StrEnum):
    """Which inbound datagrams a mapping lets through (RFC 4787 section 5)."""

    ENDPOINT_INDEPENDENT = "ei"
    ADDRESS_DEPENDENT = "hd"
    ADDRESS_AND_PORT_DEPENDENT = "pd"


class PortAllocation(StrEnum):
    """How a new mapping's external port is chosen (RFC 4787 section 4.2)."""

    PRESERVATION = "pp"
    CONTIGUITY = "pc"
    RANDOM = "rd"
