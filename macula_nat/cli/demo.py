"""``macula-nat demo``: the NAT demonstration on a simulated internet (what ``make run`` runs),
or with ``--runtime`` the supervision-tree demonstration."""

from __future__ import annotations

import argparse
import logging

import trio
from trio.testing import MockClock

from macula_nat.cli.running import print_line
from macula_nat.demo import nat as nat_demo
from macula_nat.demo import runtime as runtime_demo


def run_demo(args: argparse.Namespace) -> int:
    if not args.runtime:
        # Every node on one simulated internet whose clock jumps over idle time.
        trio.run(nat_demo.run, print_line, clock=MockClock(autojump_threshold=0))
        return 0
    if args.verbose == 0:
        # The runtime demo provokes crashes on purpose; their reports would drown its story.
        logging.getLogger("macula_nat.actors").setLevel(logging.CRITICAL)
    trio.run(runtime_demo.run, print_line, args.seconds)
    return 0


def add_demo_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo", help="run the NAT demonstration on a simulated internet (what `make run` runs)"
    )
    demo.add_argument(
        "--runtime",
        action="store_true",
        help="run the supervision-tree demonstration instead",
    )
    demo.add_argument(
        "--seconds", type=float, default=3.0, help="how long the --runtime demonstration runs"
    )
    demo.set_defaults(handler=run_demo)
