"""Long-running processes started inside lab namespaces, stopped by pid at teardown."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import trio

from tests.nat_lab.commands import LabError
from tests.nat_lab.names import NETNS_DIR

logger = logging.getLogger(__name__)

_KILL_WAIT_S = 5.0


class ProcessGroup:
    """Processes of one lab. :meth:`aclose` sends each SIGTERM, then SIGKILL after a grace."""

    def __init__(self, grace_s: float = 1.0) -> None:
        self._grace_s = grace_s
        self._processes: list[trio.Process] = []
        self._closed = False

    async def start(
        self,
        argv: Sequence[str],
        *,
        stdin: int | None = None,
        stdout: int | None = None,
        stderr: int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> trio.Process:
        """Start ``argv`` (already wrapped for its namespace) and keep it until close."""
        if self._closed:
            raise LabError("the lab is closed")
        process = await trio.lowlevel.open_process(
            list(argv), stdin=stdin, stdout=stdout, stderr=stderr, env=env
        )
        self._processes.append(process)
        logger.debug("started pid %d: %s", process.pid, argv)
        return process

    async def _stop(self, process: trio.Process) -> None:
        if process.returncode is None:
            process.terminate()
            with trio.move_on_after(self._grace_s):
                await process.wait()
        if process.returncode is None:
            logger.warning("pid %d ignored SIGTERM for %.1f s, killing", process.pid, self._grace_s)
            process.kill()
            with trio.move_on_after(_KILL_WAIT_S):
                await process.wait()
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                await stream.aclose()
        logger.debug("pid %d ended with %s", process.pid, process.returncode)

    async def aclose(self) -> None:
        """Stop every process (concurrently); new starts are refused from now on."""
        self._closed = True
        async with trio.open_nursery() as nursery:
            for process in self._processes:
                nursery.start_soon(self._stop, process)


def _netns_key(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def pids_in_namespaces(namespaces: Iterable[str]) -> dict[int, str]:
    """Pids of processes whose network namespace is one of ``namespaces`` (named netns)."""
    keys = {}
    for name in namespaces:
        key = _netns_key(NETNS_DIR / name)
        if key is not None:
            keys[key] = name
    found: dict[int, str] = {}
    if not keys:
        return found
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        key = _netns_key(entry / "ns" / "net")
        if key in keys:
            found[int(entry.name)] = keys[key]
    return found


def kill_pids(pids: Mapping[int, str]) -> None:
    """SIGKILL the given stray pids (processes left inside our own namespaces)."""
    for pid, netns in pids.items():
        if pid == os.getpid():
            continue
        logger.warning("killing stray pid %d left in namespace %s", pid, netns)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
