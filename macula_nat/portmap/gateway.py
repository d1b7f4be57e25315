"""Where the router is: the default route's gateway (Linux ``/proc/net/route``), and which of
this host's addresses faces it."""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct
from collections.abc import Sequence

import trio

logger = logging.getLogger(__name__)

ROUTE_TABLE = "/proc/net/route"


def parse_route_table(text: str) -> str | None:
    """The gateway of the default route (destination and mask 0) with the lowest metric in the
    text of ``/proc/net/route``; None when there is none or the text is not that table."""
    best: tuple[int, str] | None = None
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        try:
            destination, gateway, flags = (int(fields[i], 16) for i in (1, 2, 3))
            metric, mask = int(fields[6]), int(fields[7], 16)
        except ValueError:
            continue
        if destination or mask or not flags & 0x2 or not gateway:  # RTF_GATEWAY
            continue
        ip = socket.inet_ntoa(struct.pack("<I", gateway))  # the kernel writes host order
        if best is None or metric < best[0]:
            best = (metric, ip)
    return None if best is None else best[1]


async def default_gateway(route_table: str = ROUTE_TABLE) -> str | None:
    """The default route's gateway on this host; None when unknown (no table, no route)."""
    try:
        text = await trio.Path(route_table).read_text()
    except OSError as exc:
        logger.debug("no route table at %s: %s", route_table, exc)
        return None
    return parse_route_table(text)


def facing_address(addresses: Sequence[str], gateway: str) -> str | None:
    """Of this host's ``addresses``, the one sharing the longest prefix with ``gateway`` (of the
    same IP version): the source the gateway sees. None when there is none."""
    target = ipaddress.ip_address(gateway)
    best: tuple[int, str] | None = None
    for text in addresses:
        address = ipaddress.ip_address(text)
        if address.version != target.version or address.is_loopback != target.is_loopback:
            continue
        shared = address.max_prefixlen - (int(address) ^ int(target)).bit_length()
        if best is None or shared > best[0]:
            best = (shared, text)
    return None if best is None else best[1]
