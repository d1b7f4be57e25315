"""Served: a component handle whose state outlives the actor that serves it.

The owner creates the handle once and hands it to every incarnation of its server actor (through
:meth:`Served.child_spec`), so what users hold (tables, profiles, subscriptions) survives the
server's crashes; the server only does the work that needs a mailbox.
"""

from __future__ import annotations

from typing import ClassVar

from .actor import Actor
from .child_spec import ChildSpec, Restart
from .errors import NoProc
from .ref import ActorRef


class Served:
    """Base class of such handles; ``server_class(handle)`` builds each incarnation."""

    server_class: ClassVar[type[Actor]]
    default_id: ClassVar[str]

    def __init__(self) -> None:
        self._server: ActorRef | None = None

    @property
    def server(self) -> ActorRef | None:
        """The server's latest incarnation (None before the first start)."""
        return self._server

    def child_spec(
        self,
        id: str | None = None,
        *,
        name: str | None = None,
        restart: Restart = Restart.PERMANENT,
    ) -> ChildSpec:
        """A supervisor child serving this handle; every restart serves the same state."""
        return ChildSpec(
            id or self.default_id, self.server_class, (self,), restart=restart, name=name
        )

    def _server_or_raise(self) -> ActorRef:
        server = self._server
        if server is None or not server.alive:
            raise NoProc(f"{self} has no server running")
        return server

    def _attach(self, server: ActorRef) -> None:
        """Called by each incarnation's ``init``: one live server per handle at a time.

        Subclasses extend it to forget what died with the previous incarnation.
        """
        current = self._server
        if current is not None and current.alive:
            raise RuntimeError(f"{self} is already served by {current}")
        self._server = server
