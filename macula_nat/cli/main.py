"""``macula-nat``: the command line. Each subcommand is a thin shell over the library.

Parsing (and ``--help``) loads only :mod:`argparse` and :mod:`macula_nat.cli.parsers`; the verb's
module, and the library it needs, loads when the verb runs."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from macula_nat.cli.parsers import (
    add_connect_parsers,
    add_demo_parser,
    add_detect_parser,
    add_gateway_parser,
    add_observe_parser,
    add_status_parser,
)
from macula_nat.log_levels import UnknownLogger, parse_log_option, set_log_level


def _log_option(option: str) -> tuple[str, str]:
    try:
        return parse_log_option(option)
    except UnknownLogger as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="macula-nat", description=__doc__)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    parser.add_argument(
        "--log",
        action="append",
        default=[],
        type=_log_option,
        metavar="MODULE=LEVEL",
        help="one module's log level, repeatable: macula_nat.nat.detector=debug, or the "
        "guide's names (macula_nat_detector=debug, nat_coordinator=info)",
    )
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
    for name, module_level in args.log:
        set_log_level(name, module_level)
    status: int = args.handler(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
