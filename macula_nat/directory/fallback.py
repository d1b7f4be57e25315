"""FallbackDirectory: one directory while a condition holds, another otherwise.

A node runs the Mainline DHT as its directory; when its UDP is blocked (no DHT) it falls back
to its relay's (:class:`~macula_nat.relay.relayed_directory.RelayedDirectory`). The choice is
made per call, so the node moves back to the DHT as soon as UDP works again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from macula_nat.nat.profile import NatProfile
from macula_nat.net.address import Address

from .directory import Directory
from .record import NodeRecord

__all__ = ["FallbackDirectory"]


class FallbackDirectory(Directory):
    """``fallback`` while ``use_fallback()`` is true, ``primary`` otherwise."""

    def __init__(
        self, primary: Directory, fallback: Directory, use_fallback: Callable[[], bool]
    ) -> None:
        super().__init__()
        self.primary = primary
        self.fallback = fallback
        self._use_fallback = use_fallback

    def __repr__(self) -> str:
        return f"<FallbackDirectory {self.primary!r} else {self.fallback!r}>"

    @property
    def current(self) -> Directory:
        """The directory calls go to now."""
        return self.fallback if self._use_fallback() else self.primary

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
        return await self.current.publish_record(
            node_id,
            profile,
            ttl,
            home_relay=home_relay,
            candidates=candidates,
            home_relay_alternate=home_relay_alternate,
            profile6=profile6,
        )

    async def resolve_record(self, node_id: str) -> NodeRecord | None:
        return await self.current.resolve_record(node_id)

    async def announce_relay(self, endpoint: Address, ttl: float) -> None:
        await self.current.announce_relay(endpoint, ttl)

    async def list_relays(self) -> list[Address]:
        return await self.current.list_relays()
