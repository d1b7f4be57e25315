"""``macula-nat demo``: the NAT demonstration on a simulated internet (what ``make run`` runs),
or with ``--runtime`` the supervision-tree demonstration."""

from __future__ import annotations

import argparse
import functools
import logging
from collections.abc import Callable

import trio
from trio.testing import MockClock

from macula_nat.cli.running import print_line, run_until_interrupted
from macula_nat.demo import nat as nat_demo
from macula_nat.demo import runtime as runtime_demo
from macula_nat.net.address import Address
from macula_nat.web import DemoBoard, demo_app, serve_page


def run_demo(args: argparse.Namespace) -> int:
    if args.web is not None and not args.runtime:
        main = functools.partial(demo_with_page, print_line, args.web)
        return run_until_interrupted(main, "demo", (OSError,))
    if not args.runtime:
        # Every node on one simulated internet whose clock jumps over idle time.
        trio.run(nat_demo.run, print_line, clock=MockClock(autojump_threshold=0))
        return 0
    if args.verbose == 0:
        # The runtime demo provokes crashes on purpose; their reports would drown its story.
        logging.getLogger("macula_nat.actors").setLevel(logging.CRITICAL)
    trio.run(runtime_demo.run, print_line, args.seconds)
    return 0


async def demo_with_page(
    emit: Callable[[str], None],
    web: Address,
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The NAT demonstration with its page at ``web``, on the real clock so a person can watch
    the matrix fill in; the page stays up after the demo until cancelled (Ctrl-C)."""
    board = DemoBoard([nat_demo.node_name(preset) for preset in nat_demo.NAT_TYPES])
    async with trio.open_nursery() as nursery:
        url: str = await nursery.start(serve_page, demo_app(board), web)
        emit(f"The pair matrix, live: {url}")
        task_status.started(url)
        await nat_demo.run(emit, observer=board)
        emit(f"The demonstration is over; the page stays at {url} until Ctrl-C.")
