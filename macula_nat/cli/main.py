"""``macula-nat``: the command line. Each subcommand is a thin shell over the library."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from macula_nat.cli.connect import add_connect_parsers
from macula_nat.cli.demo import add_demo_parser
from macula_nat.cli.detect import add_detect_parser
from macula_nat.cli.gateway import add_gateway_parser
from macula_nat.cli.observe import add_observe_parser
from macula_nat.cli.status import add_status_parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="macula-nat", description=__doc__)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    commands = parser.add_subparsers(dest="command", required=True)
    add_demo_parser(commands)
    add_detect_parser(commands)
    add_observe_parser(commands)
    add_gateway_parser(commands)
    add_connect_parsers(commands)
    add_status_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # A server says where it listens; a one-shot command stays quiet unless asked.
    servers = ("observe", "gateway", "listen", "status")
    quiet = logging.INFO if args.command in servers else logging.WARNING
    level = quiet if args.verbose == 0 else (logging.INFO if args.verbose == 1 else logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    status: int = args.handler(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
