"""What the command line's parser needs and nothing more: argument types, and handlers that
load their verb's module only when the verb runs.

``macula-nat --help`` and every parse import this module, :mod:`argparse` and the few light
modules below; Trio, the QUIC stack and the cryptography a verb needs load when it runs
(``tests/cli/test_startup.py`` keeps it so).
"""

from __future__ import annotations

import argparse
import functools
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from macula_nat.net.address import Address, normalise_address

if TYPE_CHECKING:
    from macula_nat.identity import NodeId

__all__ = [
    "Handler",
    "address_argument",
    "bootstrap_argument",
    "handler",
    "node_id_argument",
    "parse_address",
    "port_argument",
    "run_verb",
]

Handler = Callable[[argparse.Namespace], int]
"""What a verb runs with its parsed arguments; returns the exit status."""


def handler(module: str, function: str) -> functools.partial[int]:
    """A parser's ``handler``: :func:`run_verb` of ``function`` in ``module`` (its ``args``
    name them, so a test can check every verb's handler exists without running it)."""
    return functools.partial(run_verb, module, function)


def run_verb(module: str, function: str, args: argparse.Namespace) -> int:
    """Import ``module`` (the verb's, with the library it needs) and run its ``function``."""
    verb: Handler = getattr(importlib.import_module(module), function)
    return verb(args)


def parse_address(text: str) -> Address:
    """``IP:PORT`` (IPv4) or ``[IP]:PORT`` (IPv6) as an address; raise ValueError otherwise."""
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit():
        raise ValueError(f"{text!r} is not IP:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 address in brackets, [IP]:PORT")
    return normalise_address((host, int(port)))


def address_argument(text: str) -> Address:
    """:func:`parse_address` as an argparse type."""
    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def bootstrap_argument(text: str) -> tuple[str, int] | str:
    """``public`` (the public Mainline DHT's routers) or ``HOST:PORT``, the host an IP
    (``[IP]:PORT`` for IPv6) or a name, as an argparse type; the DHT's configuration checks
    the name and resolves it when the node joins."""
    if text == "public":
        return text
    host, colon, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise argparse.ArgumentTypeError(f"{text!r}: write an IPv6 address in brackets")
    if not colon or not host or not port.isdigit() or not 1 <= int(port) <= 0xFFFF:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT nor 'public'")
    return host, int(port)


def port_argument(text: str) -> int:
    """A port, 1-65535, as an argparse type."""
    if not text.isdigit() or not 1 <= int(text) <= 0xFFFF:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1-65535)")
    return int(text)


def node_id_argument(text: str) -> NodeId:
    """A node id (64 hex digits) as an argparse type."""
    # Here, not at the top: identity loads the cryptography package, which only the verbs that
    # take a node id need, and only once one is given.
    from macula_nat.identity import NodeId

    try:
        return NodeId.from_text(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
