"""``macula-nat observe --listen IP:PORT [--alt IP:PORT]``: run an observer until interrupted.

:func:`run_observe` (the parser's handler, :func:`macula_nat.cli.parsers.add_observe_parser`)
runs :func:`observe_main` under ``trio.run`` until Ctrl-C. The observer logs its addresses
(``logging`` at INFO) once its sockets are bound.
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
from macula_nat.net.address import Address, is_unspecified
from macula_nat.net.endpoint import UdpStack
from macula_nat.net.real import RealUdpStack

__all__ = ["observe_main", "run_observe"]

logger = logging.getLogger(__name__)


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
