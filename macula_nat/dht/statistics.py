"""What a DHT node has done: a frozen snapshot (`DhtStatistics`) and the counters behind it."""

from __future__ import annotations

import attrs

__all__ = ["Counters", "DhtLimits", "DhtStatistics"]


@attrs.frozen
class DhtLimits:
    """The node's limits on what strangers may take (ARCHITECTURE section 10), as configured.

    A source is an IPv4 address or an IPv6 /64.
    """

    query_rate: float
    """Datagrams a second accepted from one source, sustained."""
    query_burst: float
    rate_limit_sources: int
    """Sources the rate limiter remembers."""
    amplification: float
    """Bytes answered per byte asked, at most, to an address not proven by a round trip."""
    proven_addresses: int
    """Proven addresses remembered, at most."""
    max_items: int
    max_items_per_source: int
    max_info_hashes: int
    max_peers_per_info_hash: int
    max_announces_per_source: int


@attrs.define
class Counters:
    """Cumulative counters, kept by the node handle across restarts of its server."""

    queries_sent: int = 0
    responses_received: int = 0
    errors_received: int = 0
    timeouts: int = 0
    queries_received: int = 0
    responses_sent: int = 0
    errors_sent: int = 0
    malformed: int = 0
    oversized: int = 0
    bad_signatures: int = 0
    stale_seqs: int = 0
    cas_mismatches: int = 0
    bad_tokens: int = 0
    unsolicited: int = 0
    rate_limited: int = 0
    trimmed: int = 0
    ignored_read_only: int = 0
    overloaded: int = 0
    send_failures: int = 0
    lookups: int = 0
    republished: int = 0
    insecure_ids: int = 0


@attrs.frozen
class DhtStatistics:
    """A snapshot of one DHT node. Every rejected input is counted under its reason."""

    limits: DhtLimits
    proven_addresses: int
    """Addresses proven by a round trip (answered us, or echoed our token), remembered."""
    nodes: int
    """Nodes in the routing table."""
    items: int
    """BEP 44 items stored for others (live)."""
    item_sources: int
    """Sources (IPv4 addresses, IPv6 /64s) holding stored items."""
    largest_item_holding: int
    """Items held by the source holding the most (at most ``limits.max_items_per_source``)."""
    info_hashes: int
    """Info-hashes with announced peers."""
    announcements: int
    """Announced peers held, over all info-hashes."""
    peer_sources: int
    """Sources (IPv4 addresses, IPv6 /64s) holding announcements."""
    largest_peer_holding: int
    """Announcements of the source holding the most (at most ``max_announces_per_source``)."""
    refused_info_hashes: int
    """Announcements of a new info-hash refused: every slot held by a shared swarm."""
    own_items: int
    """Our own items, republished before they expire."""
    in_flight: int
    """Our queries awaiting an answer."""
    read_only: bool
    """Whether the node is read-only now (BEP 43; `DhtNode.set_read_only`)."""
    queries_sent: int
    responses_received: int
    errors_received: int
    timeouts: int
    queries_received: int
    responses_sent: int
    errors_sent: int
    malformed: int
    """Datagrams that are not KRPC this node accepts (including oversized values)."""
    oversized: int
    """Of those, puts or responses whose value exceeds 1000 bytes (BEP 44 error 205)."""
    bad_signatures: int
    """Puts and get answers whose BEP 44 signature fails (or whose key is not the target's)."""
    stale_seqs: int
    """Puts refused with 302 (seq not newer) and get answers older than one already seen."""
    cas_mismatches: int
    bad_tokens: int
    """announce_peer or put with a token this node did not issue to that IP for that target."""
    unsolicited: int
    """Responses and errors matching no query of ours (by transaction id and source address)."""
    rate_limited: int
    """Datagrams dropped by the per-source rate limit (IPv4 address, IPv6 /64)."""
    trimmed: int
    """Answers cut to the amplification bound: to an address not yet proven by a round trip."""
    ignored_read_only: int
    """Queries left unanswered because this node is read-only (BEP 43)."""
    overloaded: int
    """Queries not sent because ``max_outstanding`` were already in flight."""
    send_failures: int
    lookups: int
    republished: int
    """Puts of our own items made by the republish timer."""
    insecure_ids: int
    """Queries and responses from a public address whose sender id BEP 42 does not allow
    there (counted, not refused, as libtorrent does unless told to enforce)."""
