"""Unique names per tree, released automatically when their actor exits."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import ActorError, AlreadyRegistered, NoProc

if TYPE_CHECKING:
    from .ref import ActorRef


class Registry:
    """Name -> running actor, for one tree (OTP's local registration)."""

    __slots__ = ("_names",)

    def __init__(self) -> None:
        self._names: dict[str, ActorRef] = {}

    def register(self, name: str, ref: ActorRef) -> None:
        """Give ``ref`` the name; it is released when the actor exits."""
        if not ref.alive:
            raise NoProc(f"cannot register {name!r}: {ref} is not running")
        if ref.name is not None:
            raise ActorError(f"{ref} is already registered as {ref.name!r}")
        holder = self._names.get(name)
        if holder is not None:
            raise AlreadyRegistered(f"name {name!r} is already registered to {holder}")
        self._names[name] = ref
        ref._registered_as(name)

    def unregister(self, name: str) -> None:
        """Release the name; the actor keeps running. Raises KeyError if it is not registered."""
        ref = self._names.pop(name)
        ref._registered_as(None)

    def _release(self, name: str, ref: ActorRef) -> None:
        if self._names.get(name) is ref:
            del self._names[name]

    def whereis(self, name: str) -> ActorRef | None:
        """The running actor registered under ``name``, or None."""
        return self._names.get(name)

    def registered(self) -> tuple[str, ...]:
        """Every name currently registered."""
        return tuple(self._names)

    def ref(self, name: str) -> NamedRef:
        """A reference that resolves ``name`` at each use, so it follows restarts."""
        return NamedRef(self, name)


class NamedRef:
    """Talks to whichever actor holds a name when the message is sent (OTP: calls by name).

    A message to a name that nobody holds raises :class:`NoProc` at once.
    """

    __slots__ = ("name", "registry")

    def __init__(self, registry: Registry, name: str) -> None:
        self.registry = registry
        self.name = name

    def __repr__(self) -> str:
        return f"<NamedRef {self.name!r}>"

    def resolve(self) -> ActorRef:
        """The actor holding the name now; :class:`NoProc` if none."""
        ref = self.registry.whereis(self.name)
        if ref is None:
            raise NoProc(f"no actor named {self.name!r} is running")
        return ref

    async def call(self, message: object, timeout: float = 5.0) -> Any:
        return await self.resolve().call(message, timeout)

    def cast(self, message: object) -> None:
        self.resolve().cast(message)

    def send(self, message: object) -> None:
        self.resolve().send(message)
