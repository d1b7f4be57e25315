"""``macula-nat observe --listen IP:PORT [--alt IP:PORT]``: run an observer until interrupted.

`add_observe_parser` adds the subcommand to the CLI's parser; its ``handler`` default,
`run_observe`, runs :func:`observe_main` under ``trio.run`` until Ctrl-C. The observer logs its
addresses (``logging`` at INFO) once its sockets are bound.
"""

from __future__ import annotations

import argparse
import functools
import logging

import trio

from macula_nat.actors import StartFailed
from macula_nat.cli.running import run_until_interrupted
from macula_nat.nat.binding import ObserverAddresses
from macula_nat.nat.observer import DEFAULT_BURST, DEFAULT_RATE, Observer, open_observer
from macula_nat.net.address import Address, is_unspecified, normalise_address
from macula_nat.net.endpoint import UdpStack
from macula_nat.net.real import RealUdpStack

__all__ = ["add_observe_parser", "observe_main", "parse_address", "run_observe"]

logger = logging.getLogger(__name__)

_DESCRIPTION = """\
Run a STUN observer: the server public nodes run so that others can learn their reflexive
address. With --alt (a second IP and a second port) it binds all four IP/port combinations and
is a full RFC 5780 server: clients can then classify their NAT's mapping and filtering, e.g. with
coturn's `turnutils_natdiscovery -m -f`. Runs until Ctrl-C."""


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
    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_observe_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add ``observe`` to ``subparsers``; parsed arguments carry ``handler=run_observe``."""
    parser = subparsers.add_parser(
        "observe",
        help="run a STUN observer (a full RFC 5780 server with --alt)",
        description=_DESCRIPTION,
    )
    parser.add_argument(
        "--listen",
        required=True,
        type=address_argument,
        metavar="IP:PORT",
        help="primary address, e.g. 203.0.113.10:3478 ([IP]:PORT for IPv6; port 0: any)",
    )
    parser.add_argument(
        "--alt",
        dest="alternate",
        type=address_argument,
        metavar="IP:PORT",
        help="alternate address: another IP and another port, e.g. 203.0.113.11:3479",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=DEFAULT_RATE,
        help=f"requests a second answered per source IP (default {DEFAULT_RATE:g})",
    )
    parser.add_argument(
        "--burst",
        type=float,
        default=DEFAULT_BURST,
        help=f"requests a source may send at once (default {DEFAULT_BURST:g})",
    )
    parser.set_defaults(handler=run_observe)
    return parser


def run_observe(args: argparse.Namespace) -> int:
    """Run the observer the parsed ``args`` describe until Ctrl-C.

    Returns the exit status: 0 after Ctrl-C, 1 when the observer cannot start (an impossible
    pair of addresses, or an address the system refuses), with the reason logged.
    """
    main = functools.partial(
        observe_main, args.listen, args.alternate, rate=args.rate, burst=args.burst
    )
    return run_until_interrupted(main, "observer", (StartFailed, ValueError))


async def observe_main(
    listen: Address,
    alternate: Address | None = None,
    *,
    rate: float = DEFAULT_RATE,
    burst: float = DEFAULT_BURST,
    stack: UdpStack | None = None,
    task_status: trio.TaskStatus[ObserverAddresses] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run an observer on real sockets (or ``stack``) until cancelled.

    With ``nursery.start`` it reports the bound addresses (ports resolved when 0 was given).
    """
    if stack is None:
        ips = [address[0] for address in (listen, alternate) if address is not None]
        stack = RealUdpStack([ip for ip in ips if not is_unspecified(ip)])
    observer = Observer(stack, listen, alternate, rate=rate, burst=burst)
    async with open_observer(observer) as ref:
        addresses = await ref.addresses()
        task_status.started(addresses)
        await trio.sleep_forever()
