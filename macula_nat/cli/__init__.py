"""``macula-nat``: the command line, one module per verb (``demo``, ``detect``, ``observe``,
``gateway``, ``listen`` / ``connect``), each a thin shell over the library."""

from macula_nat.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
