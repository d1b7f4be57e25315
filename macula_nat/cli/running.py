"""Running a long-lived server command (observer, gateway) until Ctrl-C."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

logger = logging.getLogger(__name__)


def print_line(line: str) -> None:
    """A command's output line, to standard output at once (the library itself never prints;
    commands hand this to the functions that report)."""
    print(line, flush=True)


def run_until_interrupted(
    main: Callable[[], Awaitable[object]],
    what: str,
    start_errors: tuple[type[Exception], ...],
) -> int:
    """Run ``main`` under ``trio.run`` until Ctrl-C; the exit status for the shell.

    0 after Ctrl-C; 1 when it fails with one of ``start_errors`` (an address the system refuses,
    an impossible configuration), each logged as "``what`` not started: ...". Anything else is a
    bug and propagates.
    """
    failures: list[Exception] = []
    try:
        try:
            trio.run(main)
        except* start_errors as group:
            failures.extend(_leaves(group))
    except KeyboardInterrupt:
        logger.info("%s stopped", what)
    for failure in failures:
        logger.error("%s not started: %s", what, failure)
    return 1 if failures else 0


def _leaves(group: BaseExceptionGroup[Exception]) -> list[Exception]:
    found: list[Exception] = []
    for exc in group.exceptions:
        found.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found
