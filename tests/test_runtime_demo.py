"""`make run`'s demonstration: crashes are contained, restarted, and the tree stops cleanly."""

from __future__ import annotations

from trio.testing import MockClock

from macula_nat.cli import build_parser
from macula_nat.demo import runtime as runtime_demo


async def test_the_demo_tells_a_crash_a_restart_and_a_clean_shutdown(
    autojump_clock: MockClock,
) -> None:
    lines: list[str] = []
    await runtime_demo.run(lines.append, seconds=3.0)
    ticks = [line for line in lines if line.startswith("tick ")]
    assert len(ticks) == 5  # a tick every 0.5 s for 3 s
    assert "crashed (RuntimeError('flaky worker failed on job 3'))" in ticks[2]
    assert "job #1 of this incarnation" in ticks[3]  # fresh state after the restart
    assert "root supervisor: 3 children, 1 restarts" in lines
    assert lines[-2:] == [
        "  flaky worker terminating: <Exit.SHUTDOWN: 'shutdown'>",
        "tree stopped: no task outlived it",
    ]


def test_the_cli_knows_the_demo() -> None:
    args = build_parser().parse_args(["demo", "--runtime", "--seconds", "1"])
    assert (args.command, args.runtime, args.seconds) == ("demo", True, 1.0)
