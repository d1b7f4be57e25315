"""The status page as an ASGI app (Starlette), for a node, a gateway or the demo.

Routes: ``GET /`` the page (``static/index.html``, its script and style under ``/static``),
``GET /events`` the live feed (server-sent events, :mod:`~macula_nat.web.events`),
``GET /snapshot`` one snapshot as JSON; a node's page also takes ``POST /connect`` and
``POST /close`` with ``{"peer": "<node id>"}`` and answers ``{"ok": ...}`` in words.
``app.state.events`` is the :class:`~macula_nat.web.events.EventStream` (its statistics).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from importlib.resources import files
from typing import Any, Final
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from macula_nat.gateway import Gateway
from macula_nat.nat.observer import ObserverRef
from macula_nat.relay import RelayNode
from macula_nat.system import NatSystem
from macula_nat.web.events import EventStream
from macula_nat.web.views import DemoBoard, GatewayView, NodeView, View

__all__ = ["app", "demo_app", "gateway_app"]

logger = logging.getLogger(__name__)

_STATIC: Final = StaticFiles(packages=[("macula_nat.web", "static")])
_INDEX: Final = str(files("macula_nat.web") / "static" / "index.html")
_MAX_BODY: Final = 4096
"""Bytes a form post may carry (a node id is 64 hex digits)."""


def app(system: NatSystem, *, relay: RelayNode | None = None, tick: float = 1.0) -> Starlette:
    """The status page of the running node ``system`` (and of ``relay``, when the node runs
    one), for any ASGI server; under hypercorn's Trio worker:
    ``await hypercorn.trio.serve(macula_nat.web.app(system), config)``."""
    view = NodeView(system, relay)
    return _build(view, tick, [("/connect", view.connect), ("/close", view.close)])


def gateway_app(
    gateway: Gateway,
    observer: Callable[[], ObserverRef | None] = lambda: None,
    *,
    tick: float = 1.0,
) -> Starlette:
    """A gateway's status page; ``observer`` finds its observer's current incarnation."""
    return _build(GatewayView(gateway, observer), tick, [])


def demo_app(board: DemoBoard, *, tick: float = 1.0) -> Starlette:
    """The demo's page: the pair matrix filling in as ``board`` hears of pairs."""
    return _build(board, tick, [])


PeerAction = Callable[[str], Awaitable[Any]]


def _build(view: View, tick: float, actions: list[tuple[str, PeerAction]]) -> Starlette:
    events = EventStream(view, tick=tick)

    async def index(request: Request) -> Response:
        return FileResponse(_INDEX, headers=_NO_STORE)

    async def snapshot(request: Request) -> Response:
        return JSONResponse(await view.snapshot(), headers=_NO_STORE)

    routes = [
        Route("/", index),
        Route("/snapshot", snapshot),
        Route("/events", events),
        Mount("/static", _STATIC, name="static"),
    ]
    routes += [Route(path, _peer_action(action), methods=["POST"]) for path, action in actions]
    application = Starlette(routes=routes)
    application.state.events = events
    application.state.view = view
    return application


_NO_STORE: Final = {"cache-control": "no-store"}


def _peer_action(action: PeerAction) -> Callable[[Request], Awaitable[Response]]:
    """A POST route taking ``{"peer": "<node id>"}`` (JSON or a form) for ``action``; bad
    bodies get a 400 with the reason in words, never a traceback."""

    async def route(request: Request) -> Response:
        body = await request.body()
        if len(body) > _MAX_BODY:
            return _bad(f"the request is {len(body)} bytes; at most {_MAX_BODY}")
        peer = _peer_of(body, request.headers.get("content-type", ""))
        if peer is None:
            return _bad('send {"peer": "<node id>"} as JSON, or peer=<node id> as a form')
        return JSONResponse(await action(peer))

    return route


def _peer_of(body: bytes, content_type: str) -> str | None:
    if content_type.startswith("application/x-www-form-urlencoded"):
        values = parse_qs(body.decode("utf-8", "replace")).get("peer", [])
        return values[0] if values else None
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    peer = data.get("peer") if isinstance(data, dict) else None
    return peer if isinstance(peer, str) else None


def _bad(error: str) -> Response:
    return JSONResponse({"ok": False, "error": error}, status_code=400)
