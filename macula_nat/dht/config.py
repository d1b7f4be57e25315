"""How a DHT node behaves: its address, bootstrap contacts, timeouts, periods and limits.

Every period and timeout is a number here, so simulated tests run the node under
``trio.testing.MockClock`` with the protocol's real values (BEP 5: 15 min refresh; BEP 44: 2 h
item lifetime) and still finish in milliseconds.
"""

from __future__ import annotations

from typing import Any

import attrs

from macula_nat.net.address import ANY_IPV4, Address, normalise_address, normalise_ip

from .bootstrap import Resolver, bootstrap_hosts, resolve
from .item_store import ITEM_LIFETIME
from .lookup import ALPHA
from .routing_table import K

__all__ = ["DhtConfig"]


def _optional_ip(ip: str | None) -> str | None:
    return None if ip is None else normalise_ip(ip)


def _positive(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be positive, not {value!r}")


@attrs.frozen(kw_only=True)
class DhtConfig:
    """A DHT node's settings; the defaults are the BEPs' and libtorrent's where they exist."""

    listen: Address = attrs.field(default=(ANY_IPV4, 0), converter=normalise_address)
    """Where the node's own UDP socket binds; port 0 picks one, which a restart keeps."""
    bootstrap: tuple[tuple[str, int], ...] = attrs.field(default=(), converter=bootstrap_hosts)
    """Hosts to join through, ``(IP or name, port)``: for the public DHT its routers
    (`bootstrap.PUBLIC_BOOTSTRAP`), for a private one the gateways; names are resolved at
    each bootstrap."""
    resolver: Resolver = attrs.field(default=resolve, eq=False)
    """Resolves bootstrap names (default: the system's; tests inject their own)."""
    external_ip: str | None = attrs.field(default=None, converter=_optional_ip)
    """This node's external IP, when known: its id is then derived from it (BEP 42). None:
    from the listen address if that is a public one, else a random id."""
    read_only: bool | None = None
    """BEP 43: send ``ro=1``, answer no query and stay out of other nodes' tables, as a node
    behind a NAT must (others could not reach it to ask). True: always; False: never (a node
    on a public address, a gateway's); None: as the node's owner says
    (`DhtNode.set_read_only`): a node alone is a full node, and one that `open_nat_system`
    runs is read-only until its NAT profile says it is reachable from anywhere
    (`macula_nat.dht.read_only`), unless that system is an observer (public, so full)."""
    k: int = attrs.field(default=K, validator=_positive)
    alpha: int = attrs.field(default=ALPHA, validator=_positive)
    query_timeout: float = attrs.field(default=2.0, validator=_positive)
    """Seconds one query may go unanswered before it counts as failed."""
    operation_timeout: float = attrs.field(default=30.0, validator=_positive)
    """Seconds a whole lookup (and the stores that follow it) may take."""
    max_lookup_queries: int = attrs.field(default=200, validator=_positive)
    """Queries one lookup may send at most: every lookup loop is bounded."""
    max_outstanding: int = attrs.field(default=1024, validator=_positive)
    """Queries in flight at once, over all operations; beyond it a query fails at once."""
    maintenance_interval: float = attrs.field(default=60.0, validator=_positive)
    """Seconds between maintenance rounds: pings, bucket refresh, expiry, republish."""
    pings_per_round: int = attrs.field(default=8, validator=_positive)
    refresh_interval: float = attrs.field(default=15 * 60.0, validator=_positive)
    item_lifetime: float = attrs.field(default=ITEM_LIFETIME, validator=_positive)
    """How long this node keeps others' items (BEP 44: 2 hours)."""
    republish_interval: float = attrs.field(default=ITEM_LIFETIME / 2, validator=_positive)
    """How often our own items are put again: well before other nodes let them expire."""
    peer_lifetime: float = attrs.field(default=30 * 60.0, validator=_positive)
    query_rate: float = attrs.field(default=50.0, validator=_positive)
    """Datagrams a second accepted from one source (a token bucket per IPv4 address or IPv6 /64)."""
    query_burst: float = attrs.field(default=100.0, validator=_positive)
    rate_limit_sources: int = attrs.field(default=4096, validator=_positive)
    """Sources the rate limiter remembers (bounded memory under spoofed floods)."""
    amplification: float = attrs.field(default=3.0, validator=attrs.validators.ge(1.0))
    """Bytes answered per byte asked, at most, to an address not yet proven by a round trip
    (RFC 9000 8.1's 3x): a spoofed source cannot use this node as an amplifier."""
    proven_addresses: int = attrs.field(default=4096, validator=_positive)
    """Addresses remembered as proven (they answered us, or echoed our token), 10 min each."""
    max_items: int = attrs.field(default=4096, validator=_positive)
    """BEP 44 items stored for others; when full, the largest holder's oldest item goes."""
    max_items_per_source: int = attrs.field(default=256, validator=_positive)
    """Items one source (an IPv4 address or an IPv6 /64) may have stored here; beyond it, a new
    one replaces that source's oldest. 16 sources at the quota fill the store."""
    max_info_hashes: int = attrs.field(default=4096, validator=_positive)
    """Info-hashes with announced peers; a new one takes the slot of the largest holder's
    oldest announcement that is alone in its swarm (if none is, it is refused: error 202)."""
    max_peers_per_info_hash: int = attrs.field(default=50, validator=_positive)
    """Announcements kept per info-hash (an answer carries 50 at most); when full, that of the
    source holding the most announcements goes. With ``max_info_hashes`` this caps the table at
    204,800 announcements: 35 MiB from IPv4 sources of one each, 56 MiB at worst (IPv6 /64s of
    two each; tests/bench/attack_dht.py)."""
    max_announces_per_source: int = attrs.field(default=256, validator=_positive)
    """Announcements one source may have here, one per info-hash; beyond it, its oldest goes."""
    version: bytes = b"MN\x00\x01"
    """The ``v`` client version sent with every message (BEP 5 convention: 2 + 2 bytes)."""
