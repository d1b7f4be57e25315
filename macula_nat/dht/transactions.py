"""Outstanding KRPC queries, keyed by transaction id AND the address the query went to.

A response counts only when both match: one from another address, or with an id we never used
(or stopped waiting for), is unsolicited and the caller drops and counts it. The table is
bounded: past ``capacity`` queries in flight, `Transactions.open` refuses a new one.
"""

from __future__ import annotations

import secrets
from typing import Final

import trio

from .compact import Address
from .krpc import Error, Response

__all__ = ["Pending", "Transactions"]

_ID_SIZE: Final = 4
"""Random bytes per transaction id. A matching answer proves its address gets our packets (the
amplification bound trusts it), so the id must not be guessable: with 2 bytes (BEP 5's
suggestion) a spoofer's few hundred rate-limited guesses per query would win 1 time in 300."""
_ID_TRIES: Final = 8


class Pending:
    """One query awaiting its answer: `wait` returns the response or error, None if abandoned."""

    __slots__ = ("_event", "reply")

    def __init__(self) -> None:
        self._event = trio.Event()
        self.reply: Response | Error | None = None

    def settle(self, reply: Response | Error | None) -> None:
        if not self._event.is_set():
            self.reply = reply
            self._event.set()

    async def wait(self) -> Response | Error | None:
        await self._event.wait()
        return self.reply


class Transactions:
    """Queries in flight by ``(transaction id, destination address)``."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity!r}")
        self._capacity = capacity
        self._pending: dict[tuple[bytes, Address], Pending] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def open(self, address: Address) -> tuple[bytes, Pending] | None:
        """A fresh transaction id for a query to ``address`` and its waiter; None when full."""
        if len(self._pending) >= self._capacity:
            return None
        for attempt in range(_ID_TRIES):
            tid = secrets.token_bytes(_ID_SIZE if attempt < _ID_TRIES - 1 else 2 * _ID_SIZE)
            if (tid, address) not in self._pending:
                pending = self._pending[tid, address] = Pending()
                return tid, pending
        return None

    def close(self, tid: bytes, address: Address) -> None:
        """Stop waiting for ``tid`` from ``address``: a later answer is unsolicited."""
        pending = self._pending.pop((tid, address), None)
        if pending is not None:
            pending.settle(None)

    def resolve(self, tid: bytes, address: Address, reply: Response | Error) -> bool:
        """Hand ``reply`` to its waiter; False (nothing changes) when none matches."""
        pending = self._pending.pop((tid, address), None)
        if pending is None:
            return False
        pending.settle(reply)
        return True

    def abandon_all(self) -> None:
        """Wake every waiter with no answer (the socket they were sent from is gone)."""
        pending, self._pending = self._pending, {}
        for waiter in pending.values():
            waiter.settle(None)
