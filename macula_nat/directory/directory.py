"""The directory interface: where nodes publish their NAT profile and find each other's.

Two backends sit behind it: the embedded, in-process one (:mod:`.embedded`) and the Mainline
DHT (:mod:`.mainline`), whose records are signed BEP 44 items under each node's own key. The
method names follow that model: a node *publishes* its record and *resolves* another node's.
Node ids are their text form (:meth:`macula_nat.identity.NodeId.text`).
"""

from __future__ import annotations

import abc
from collections.abc import Iterable

from macula_nat.nat.profile import NatProfile
from macula_nat.net.address import Address

from .record import NodeRecord


class DirectoryError(Exception):
    """The directory could not answer (unreachable, timed out, or none configured).

    Distinct from "no record": :meth:`Directory.resolve_profile` returns None for that.
    """


class Directory(abc.ABC):
    """Where a node publishes its record and finds other nodes' records and the relays.

    Every method is a Trio checkpoint and raises :class:`DirectoryError` when the directory
    cannot be reached. Backends that sign records (the Mainline DHT) accept only the records of
    the key they hold and never return a record that fails verification or replays an older one.
    """

    @abc.abstractmethod
    async def publish_record(
        self,
        node_id: str,
        profile: NatProfile | None,
        ttl: float,
        *,
        home_relay: Address | None = None,
        candidates: Iterable[Address] = (),
    ) -> NodeRecord:
        """Make ``node_id``'s record (its NAT profile, home relay and candidate addresses)
        resolvable for ``ttl`` seconds, replacing any earlier one; returns what was published.
        ValueError for a ``ttl`` that is not positive."""

    @abc.abstractmethod
    async def resolve_record(self, node_id: str) -> NodeRecord | None:
        """The live, valid record published under ``node_id``, or None if there is none."""

    @abc.abstractmethod
    async def announce_relay(self, endpoint: Address, ttl: float) -> None:
        """Announce that a relay serves at ``endpoint`` for ``ttl`` seconds."""

    @abc.abstractmethod
    async def list_relays(self) -> list[Address]:
        """The relays announced and not expired."""

    async def publish_profile(self, node_id: str, profile: NatProfile, ttl: float) -> None:
        """Publish a record carrying only ``profile``: it replaces the whole record, so a node
        with a home relay publishes with :meth:`publish_record` (the relay registry does)."""
        await self.publish_record(node_id, profile, ttl)

    async def resolve_profile(self, node_id: str) -> NatProfile | None:
        """The NAT profile in ``node_id``'s record, or None."""
        record = await self.resolve_record(node_id)
        return None if record is None else record.profile
