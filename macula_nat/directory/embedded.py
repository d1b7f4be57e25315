"""EmbeddedDirectory: the in-process backend, a dict with expiry by Trio time; zero setup.

For one program, a demo, or many simulated nodes in one process sharing one instance. Expired
records vanish on read and in an amortised sweep on publish, so memory follows the live records.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable

import attrs
import trio

from macula_nat.nat.profile import NatProfile
from macula_nat.net.address import Address, normalise_address

from .directory import Directory
from .record import NodeRecord

logger = logging.getLogger(__name__)

_MIN_SWEEP = 64


@attrs.frozen
class DirectoryStatistics:
    records: int
    """Live records (expired ones are dropped when this snapshot is taken)."""
    publishes: int
    resolves: int
    found: int
    """Resolves that returned a record."""
    expired: int
    """Records dropped because their TTL ran out."""


class EmbeddedDirectory(Directory):
    """Records in a dict, each until ``trio.current_time() + ttl``; never unreachable."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self._clock = clock
        self._records: dict[str, tuple[NodeRecord, float]] = {}
        self._relays: dict[Address, float] = {}
        self._sweep_at = _MIN_SWEEP
        self._publishes = 0
        self._resolves = 0
        self._found = 0
        self._expired = 0

    async def publish_record(
        self,
        node_id: str,
        profile: NatProfile | None,
        ttl: float,
        *,
        home_relay: Address | None = None,
        candidates: Iterable[Address] = (),
        home_relay_alternate: Address | None = None,
        profile6: NatProfile | None = None,
    ) -> NodeRecord:
        if not ttl > 0:
            raise ValueError(f"ttl must be a positive number of seconds, not {ttl!r}")
        await trio.lowlevel.checkpoint()
        now = trio.current_time()
        previous = self._records.get(node_id)
        record = NodeRecord(
            profile=profile,
            home_relay=home_relay,
            home_relay_alternate=home_relay_alternate,
            profile6=profile6,
            candidates=tuple(candidates),
            expires_at=math.ceil(self._clock() + ttl),
            seq=previous[0].seq + 1 if previous is not None else 1,
        )
        self._records[node_id] = (record, now + ttl)
        self._publishes += 1
        if len(self._records) >= self._sweep_at:
            self._sweep(now)
            self._sweep_at = max(_MIN_SWEEP, 2 * len(self._records))
        logger.debug("published the record of %s for %.1f s", node_id, ttl)
        return record

    async def resolve_record(self, node_id: str) -> NodeRecord | None:
        await trio.lowlevel.checkpoint()
        self._resolves += 1
        entry = self._records.get(node_id)
        if entry is None:
            return None
        record, expires_at = entry
        if trio.current_time() >= expires_at:
            del self._records[node_id]
            self._expired += 1
            return None
        self._found += 1
        return record

    async def announce_relay(self, endpoint: Address, ttl: float) -> None:
        if not ttl > 0:
            raise ValueError(f"ttl must be a positive number of seconds, not {ttl!r}")
        await trio.lowlevel.checkpoint()
        self._relays[normalise_address(endpoint)] = trio.current_time() + ttl

    async def list_relays(self) -> list[Address]:
        await trio.lowlevel.checkpoint()
        now = trio.current_time()
        for endpoint in [e for e, expires_at in self._relays.items() if now >= expires_at]:
            del self._relays[endpoint]
        return list(self._relays)

    def statistics(self) -> DirectoryStatistics:
        self._sweep(trio.current_time())
        return DirectoryStatistics(
            records=len(self._records),
            publishes=self._publishes,
            resolves=self._resolves,
            found=self._found,
            expired=self._expired,
        )

    def _sweep(self, now: float) -> None:
        dead = [node_id for node_id, (_, expires_at) in self._records.items() if now >= expires_at]
        for node_id in dead:
            del self._records[node_id]
        self._expired += len(dead)
