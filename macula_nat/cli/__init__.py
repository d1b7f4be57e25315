"""``macula-nat``: the command line, one module per verb (``demo``, ``detect``, ``observe``,
``gateway``, ``listen`` / ``connect``, ``status``), each a thin shell over the library; their
arguments are in :mod:`.parsers`, so that ``--help`` loads none of them."""

from macula_nat.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
