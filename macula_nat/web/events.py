"""The page's live feed: a server-sent event stream of snapshots, as a plain ASGI app.

Each stream runs in one nursery: one task pushes a snapshot at once, then at every change the
view reports (``nat_profile_changed``, a demo pair ending) and at least every ``tick`` seconds
for the counters; another waits for the client to go (``http.disconnect``) and cancels both.
So a browser closing its tab ends every task of its stream. A stream also ends after
``lifetime`` seconds; the browser's EventSource reconnects by itself (``retry``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

import attrs
import trio

from macula_nat.web.views import View

__all__ = ["EventStream", "StreamStatistics"]

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_RETRY_MS: Final = 1000


@attrs.frozen
class StreamStatistics:
    open: int
    """Streams open now (browsers watching)."""
    served: int
    """Streams opened since the app started."""
    events: int
    """Snapshots pushed, over all streams."""


@attrs.define(eq=False)
class EventStream:
    """``GET /events``: ``text/event-stream`` of ``snapshot`` events (JSON)."""

    view: View
    tick: float = 1.0
    lifetime: float = 600.0
    _open: int = attrs.field(init=False, default=0)
    _served: int = attrs.field(init=False, default=0)
    _events: int = attrs.field(init=False, default=0)

    def statistics(self) -> StreamStatistics:
        return StreamStatistics(open=self._open, served=self._served, events=self._events)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-store"),
            (b"x-accel-buffering", b"no"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        self._open += 1
        self._served += 1
        gone = trio.Event()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_cancel_on_disconnect, receive, nursery.cancel_scope, gone)
                with trio.move_on_after(self.lifetime):
                    await self._push(send)
                nursery.cancel_scope.cancel()
        finally:
            self._open -= 1
        if not gone.is_set():  # the lifetime ran out: end the body (the browser reconnects)
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _push(self, send: Send) -> None:
        await send(_chunk(f"retry: {_RETRY_MS}\n\n"))
        async with self.view.watch() as changed:
            while True:
                snapshot = await self.view.snapshot()
                await send(_chunk(f"event: snapshot\ndata: {json.dumps(snapshot)}\n\n"))
                self._events += 1
                with trio.move_on_after(self.tick):
                    await changed()


def _chunk(text: str) -> MutableMapping[str, Any]:
    return {"type": "http.response.body", "body": text.encode(), "more_body": True}


async def _cancel_on_disconnect(
    receive: Receive, scope: trio.CancelScope, gone: trio.Event
) -> None:
    while True:  # ends at the disconnect: a GET's body is one message at most before it
        message = await receive()
        if message["type"] == "http.disconnect":
            gone.set()
            scope.cancel()
            return
