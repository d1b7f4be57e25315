"""Command-line start-up: ``macula-nat`` side by side with the smallest Python programs.

Every command is a fresh process (this environment's Python and its ``macula-nat`` script), run
``RUNS`` times with the command and its baseline alternating, so both see the same machine; the
figure is each one's median wall time, in milliseconds. (``python -X importtime -c "import
macula_nat.cli.main"`` shows where the rest goes.)

- ``macula-nat --help`` against ``python -c pass``: parsing loads no verb (issue 15's goal: at
  most 3x).
- ``macula-nat detect`` on an open network, against an RFC 5780 observer of this process on
  127.0.0.1 / 127.0.0.2 (no NAT in between: every test is answered within a millisecond), against
  ``python -c "import trio"``: the floor any Trio program pays before its first checkpoint.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import trio

from macula_nat.cli.observe import observe_main
from macula_nat.nat.binding import ObserverAddresses

from .timing import Figure, now

RUNS: Final = 20
HELP_GOAL: Final = "<= 3x"
LOOPBACK: Final = ("127.0.0.1", "127.0.0.2")


def _macula_nat() -> list[str]:
    """The installed ``macula-nat`` script beside this Python (else ``python -m macula_nat``)."""
    script = Path(sys.executable).with_name("macula-nat")
    return [str(script)] if script.exists() else [sys.executable, "-m", "macula_nat"]


async def _seconds(command: Sequence[str]) -> float:
    started = now()
    await trio.run_process(list(command), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return now() - started


async def _side_by_side(command: Sequence[str], baseline: Sequence[str]) -> tuple[float, float]:
    """Median milliseconds of ``command`` and of ``baseline``, alternating, after one warm-up
    run of each (file cache)."""
    ours: list[float] = []
    theirs: list[float] = []
    await _seconds(command)
    await _seconds(baseline)
    for _ in range(RUNS):
        ours.append(await _seconds(command))
        theirs.append(await _seconds(baseline))
    return 1000 * statistics.median(ours), 1000 * statistics.median(theirs)


async def run() -> list[Figure]:
    cli = _macula_nat()
    help_ms, pass_ms = await _side_by_side([*cli, "--help"], [sys.executable, "-c", "pass"])
    async with trio.open_nursery() as nursery:
        listen, alternate = (LOOPBACK[0], 0), (LOOPBACK[1], 0)
        addresses: ObserverAddresses = await nursery.start(observe_main, listen, alternate)
        ip, port = addresses.primary
        detect = [*cli, "detect", "--observer", f"{ip}:{port}"]
        detect_ms, trio_ms = await _side_by_side(detect, [sys.executable, "-c", "import trio"])
        nursery.cancel_scope.cancel()
    help_name = "startup: macula-nat --help (vs python -c pass)"
    detect_name = "startup: macula-nat detect, no NAT (vs python -c 'import trio')"
    return [
        Figure(help_name, help_ms, "ms", pass_ms, HELP_GOAL),
        Figure(detect_name, detect_ms, "ms", trio_ms),
    ]


if __name__ == "__main__":

    async def _main() -> None:
        for figure in await run():
            print(figure.render(), flush=True)

    trio.run(_main)
