"""``macula-nat``: the command line. Each subcommand is a thin shell over the library."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import trio
from trio.testing import MockClock

from macula_nat import nat_demo, runtime_demo
from macula_nat.command import print_line
from macula_nat.connect_command import add_connect_parsers
from macula_nat.gateway_command import add_gateway_parser
from macula_nat.nat.detect_command import add_detect_parser
from macula_nat.nat.observe_command import add_observe_parser


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="macula-nat", description=__doc__)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    commands = parser.add_subparsers(dest="command", required=True)
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
    add_detect_parser(commands)
    add_observe_parser(commands)
    add_gateway_parser(commands)
    add_connect_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # A server says where it listens; a one-shot command stays quiet unless asked.
    quiet = logging.INFO if args.command in ("observe", "gateway", "listen") else logging.WARNING
    level = quiet if args.verbose == 0 else (logging.INFO if args.verbose == 1 else logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    status: int = args.handler(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
