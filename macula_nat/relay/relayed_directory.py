"""RelayedDirectory: a node's directory through its home relay, for when its UDP is blocked.

The Mainline DHT is UDP, so a node behind a firewall that drops UDP has no directory of its
own. Its home relay (reached over TCP/TLS) runs one on the gateway: this :class:`Directory`
asks it through DIRECTORY_QUERY frames on the home registration (:mod:`.directory_path` has
the bodies and the relay's side). The node signs its own record, so the relay can store it
but not alter it; records are resolved and relays listed as the relay's directory answers.
A node does not announce relays through it (it is not one).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable

import trio

from macula_nat.dht.mutable_item import MutableItem, signature_input
from macula_nat.directory import Directory, DirectoryError, NodeRecord
from macula_nat.directory.mainline import PROFILE_SALT
from macula_nat.identity import NodeId, NodeKey
from macula_nat.nat.profile import NatProfile
from macula_nat.net.address import Address

from .directory_path import (
    DirectoryPathError,
    ceil_ttl,
    decode_record,
    decode_relays,
    encode_publish,
)
from .errors import RelayTimeout
from .frames import DirectoryOp, DirectoryStatus
from .registry import RelayRegistry

__all__ = ["RelayedDirectory"]

logger = logging.getLogger(__name__)

BUSY_RETRY = 0.5
"""Seconds before a query the relay answered BUSY is asked again (within the call's timeout):
a relay's default rate refills one query a registration every 0.5 s
(``RelayConfig.directory_rate``), so a node asking for a dozen records at once gets them all."""


class RelayedDirectory(Directory):
    """``key``'s directory through the home registration of the relay registry ``registry()``
    gives (a callable: the registry takes this directory when it is made); a call made with no
    home registration waits for one. Each call is answered within ``timeout`` seconds or
    raises :class:`DirectoryError`. ``clock`` gives UNIX seconds (sequence numbers, the
    expiry published), as :class:`~macula_nat.directory.mainline.MainlineDirectory` takes
    them, so the records either publishes follow one another in order."""

    def __init__(
        self,
        key: NodeKey,
        registry: Callable[[], RelayRegistry],
        *,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self._key = key
        self._registry = registry
        self._timeout = timeout
        self._clock = clock
        self._seq = 0

    def __repr__(self) -> str:
        return f"<RelayedDirectory {self._key.node_id.short()}>"

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
        """Sign our record and have the relay store it for ``ttl`` seconds; ValueError for
        another node's id, DirectoryError when the relay did not store it."""
        if node_id != self._key.node_id.text():
            raise ValueError(f"{self} holds the key of {self._key.node_id}, not of {node_id}")
        seconds = ceil_ttl(ttl)
        now = self._clock()
        self._seq = max(self._seq + 1, int(now * 1000))
        record = NodeRecord(
            profile=profile,
            home_relay=home_relay,
            home_relay_alternate=home_relay_alternate,
            profile6=profile6,
            candidates=tuple(candidates),
            expires_at=math.ceil(now + ttl),
            seq=self._seq,
        )
        value = record.encode()
        signature = self._key.sign(signature_input(record.seq, value, PROFILE_SALT))
        item = MutableItem(self._key.node_id.raw, record.seq, value, signature, PROFILE_SALT)
        await self._ask(DirectoryOp.PUBLISH, encode_publish(item, seconds))
        logger.info("%s: published the record through the relay (seq %d)", self, record.seq)
        return NodeRecord.decode(value, record.seq)  # as peers read it (encode may cut)

    async def resolve_record(self, node_id: str) -> NodeRecord | None:
        target = NodeId.from_text(node_id)
        try:
            record = decode_record(await self._ask(DirectoryOp.RESOLVE, target.raw))
        except _NotFound:
            return None
        except DirectoryPathError as exc:
            raise DirectoryError(f"the relay answered a resolve with {exc}") from None
        return record  # live: the relay's directory answers with live records only

    async def announce_relay(self, endpoint: Address, ttl: float) -> None:
        raise DirectoryError(f"{self}: a node reaching the directory through its relay is no relay")

    async def list_relays(self) -> list[Address]:
        try:
            return decode_relays(await self._ask(DirectoryOp.LIST_RELAYS, b""))
        except DirectoryPathError as exc:
            raise DirectoryError(f"the relay answered a relay list with {exc}") from None

    async def _ask(self, op: DirectoryOp, body: bytes) -> bytes:
        """The body of the relay's OK answer; :class:`_NotFound`, or DirectoryError with the
        relay's status, else (BUSY only when asking again would pass the timeout)."""
        registry = self._registry()
        deadline = trio.current_time() + self._timeout
        client = registry.client
        if client is None:  # between registrations: wait for the next one, not for `home`,
            # which comes once the registry published through here (after this call, when it
            # is an update of the record holding the record's lock: each would wait on the other)
            with trio.move_on_at(deadline):
                await registry.home_registration.wait_value(lambda held: held is not None)
            client = registry.client
        if client is None:
            raise DirectoryError(f"{self}: no relay registration to reach the directory through")
        try:
            while True:
                answer = await client.query_directory(
                    op, body, timeout=max(0.001, deadline - trio.current_time())
                )
                if answer.status is not DirectoryStatus.BUSY:
                    break
                if trio.current_time() + BUSY_RETRY >= deadline:
                    break
                await trio.sleep(BUSY_RETRY)
        except RelayTimeout as exc:
            raise DirectoryError(str(exc)) from None
        if answer.status is DirectoryStatus.OK:
            return answer.body
        if answer.status is DirectoryStatus.NOT_FOUND:
            raise _NotFound
        raise DirectoryError(f"the relay's directory answered {op.name}: {answer.status.name}")


class _NotFound(Exception):
    """RESOLVE: the relay's directory has no live record."""
