"""The directory interface: where nodes publish their NAT profile and find each other's.

Two backends sit behind it: the embedded, in-process one (:mod:`.embedded`) and the Mainline
DHT (:mod:`.mainline`), whose records are signed BEP 44 items under each node's own key. The
method names follow that model: a node *publishes* its record and *resolves* another node's.
Node ids are their text form (:meth:`macula_nat.identity.NodeId.text`).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable

import attrs
import trio

from macula_nat.dht.mutable_item import MutableItem
from macula_nat.identity import NodeId
from macula_nat.nat.profile import NatProfile
from macula_nat.net.address import Address

from .record import NodeRecord, RecordError


class DirectoryError(Exception):
    """The directory could not answer (unreachable, timed out, or none configured).

    Distinct from "no record": :meth:`Directory.resolve_profile` returns None for that.
    """


@attrs.define(eq=False)
class _OwnRecord:
    """The last record this directory object published for one node, and the lock its
    writers take in turn."""

    lock: trio.Lock = attrs.Factory(trio.Lock)
    record: NodeRecord | None = None


_BLANK = NodeRecord(profile=None, expires_at=0)


class Directory(abc.ABC):
    """Where a node publishes its record and finds other nodes' records and the relays.

    Every method is a Trio checkpoint and raises :class:`DirectoryError` when the directory
    cannot be reached. Backends that sign records (the Mainline DHT) accept only the records of
    the key they hold and never return a record that fails verification or replays an older one.
    """

    def __init__(self) -> None:
        self._own: dict[str, _OwnRecord] = {}

    @abc.abstractmethod
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
        """Make ``node_id``'s record (its NAT profile, a dual-stack node's IPv6 profile, home
        relay, the home relay's address of the other IP version, and candidate addresses)
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

    async def update_record(
        self, node_id: str, ttl: float, change: Callable[[NodeRecord], NodeRecord]
    ) -> NodeRecord:
        """Publish ``node_id``'s record as ``change`` makes it from the current one (its
        ``profile``, ``profile6``, ``home_relay``, ``home_relay_alternate`` and ``candidates``
        count; a blank record when there is none).

        A node's record has several writers (the coordinator its profile, the relay registry its
        home relay): updates run one at a time from the last record published through this
        object, so no writer undoes another's field, however fast they follow each other. The
        first update resolves the record (a restarted node keeps what it published before).
        """
        own = self._own.setdefault(node_id, _OwnRecord())
        async with own.lock:
            current = own.record if own.record is not None else await self.resolve_record(node_id)
            wanted = change(current if current is not None else _BLANK)
            own.record = await self.publish_record(
                node_id,
                wanted.profile,
                ttl,
                home_relay=wanted.home_relay,
                candidates=wanted.candidates,
                home_relay_alternate=wanted.home_relay_alternate,
                profile6=wanted.profile6,
            )
            return own.record

    async def publish_item(self, item: MutableItem, ttl: float) -> None:
        """Publish a record its node signed (a BEP 44 item under the node's key), for ``ttl``
        seconds: what a relay does for a node that reaches the directory through it
        (:mod:`macula_nat.relay.directory_path`). ValueError unless the signature checks and
        the value is a record. A backend that stores signed items (the DHT) stores it as it
        is; this one keeps the record it holds."""
        if not item.verify():
            raise ValueError("the item's signature does not check")
        try:
            record = NodeRecord.decode(item.value, item.seq)
        except RecordError as exc:
            raise ValueError(str(exc)) from None
        await self.publish_record(
            NodeId(item.public_key).text(),
            record.profile,
            ttl,
            home_relay=record.home_relay,
            candidates=record.candidates,
            home_relay_alternate=record.home_relay_alternate,
            profile6=record.profile6,
        )

    async def publish_profile(self, node_id: str, profile: NatProfile, ttl: float) -> None:
        """Publish a record carrying only ``profile``: it replaces the whole record, so the
        node's own writers (coordinator, relay registry) change theirs with
        :meth:`update_record` instead."""
        await self.publish_record(node_id, profile, ttl)

    async def resolve_profile(self, node_id: str) -> NatProfile | None:
        """The NAT profile in ``node_id``'s record, or None."""
        record = await self.resolve_record(node_id)
        return None if record is None else record.profile
