"""What a NAT box does, in RFC 4787 terms: mapping, filtering, port allocation, timers."""

from __future__ import annotations

import attrs

from macula_nat.behavior import FilteringBehavior, MappingBehavior, PortAllocation


def _port_range(value: tuple[int, int]) -> tuple[int, int]:
    low, high = value
    if not 1 <= low <= high <= 65535:
        raise ValueError(f"port range must satisfy 1 <= low <= high <= 65535, not {value!r}")
    return low, high


def _nonzero(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value == 0:
        raise ValueError(f"{attribute.name} must not be 0")


def _positive(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be positive, not {value!r}")


@attrs.frozen(kw_only=True)
class NatBehavior:
    """A NAT's complete behaviour.

    ``port_delta`` is the step between consecutive external ports under ``pc`` allocation.
    Mappings live ``mapping_lifetime`` seconds after their last refresh; outbound traffic always
    refreshes (RFC 4787 REQ-6), inbound traffic that passes filtering only with
    ``inbound_refresh``. ``port_range`` bounds external ports; ``pp`` preserves a port only
    inside it and otherwise, or when the port is taken, falls back to a random free port.
    """

    mapping: MappingBehavior = attrs.field(converter=MappingBehavior)
    filtering: FilteringBehavior = attrs.field(converter=FilteringBehavior)
    allocation: PortAllocation = attrs.field(converter=PortAllocation)
    port_delta: int = attrs.field(default=1, validator=_nonzero)
    hairpinning: bool = True
    mapping_lifetime: float = attrs.field(default=120.0, validator=_positive)
    inbound_refresh: bool = False
    port_range: tuple[int, int] = attrs.field(default=(1024, 65535), converter=_port_range)
