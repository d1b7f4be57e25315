"""Small actors the runtime tests share.

Every test here takes pytest-trio's ``autojump_clock``: it runs on MockClock(autojump_threshold=0).
"""

from __future__ import annotations

from typing import Any

import trio

from macula_nat.actors import NOREPLY, Actor, Caller, Fail, Stop


class Boom(Exception):
    """The crash the tests provoke."""


class Worker(Actor):
    """Replies to calls, and does on request what a test needs: crash, stop, sleep, defer."""

    def __init__(self, log: list[Any] | None = None, label: str = "w") -> None:
        self.log = log if log is not None else []
        self.label = label
        self.casts: list[Any] = []
        self.infos: list[Any] = []
        self.deferred: list[Caller] = []

    async def init(self) -> None:
        self.log.append(("start", self.label))

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        match message:
            case ("echo", value):
                return value
            case "crash":
                raise Boom(self.label)
            case ("stop", reason):
                return Stop(reason, reply="stopping")
            case ("sleep", seconds):
                await trio.sleep(seconds)
                return "slept"
            case "defer":
                self.deferred.append(caller)
                return NOREPLY
            case ("fail", error):
                return Fail(error)
            case "casts":
                return list(self.casts)
            case "infos":
                return list(self.infos)
        return await super().handle_call(message, caller)

    async def handle_cast(self, message: Any) -> Stop | None:
        if message == "crash":
            raise Boom(self.label)
        if isinstance(message, tuple) and message[0] == "stop":
            return Stop(message[1])
        self.casts.append(message)
        return None

    async def handle_info(self, message: Any) -> Stop | None:
        self.infos.append(message)
        return None

    async def terminate(self, reason: object) -> None:
        self.log.append(("terminate", self.label, reason))
