"""``macula-nat gateway --listen IP:PORT [--alt IP:PORT] ...``: run a gateway until interrupted.

`add_gateway_parser` adds the subcommand to the CLI's parser; its ``handler`` default,
`run_gateway`, runs :func:`gateway_main` under ``trio.run`` until Ctrl-C.
"""

from __future__ import annotations

import argparse
import functools
import logging
from pathlib import Path

import trio

from macula_nat.actors import Registry, StartFailed
from macula_nat.cli.observe import address_argument
from macula_nat.cli.running import run_until_interrupted
from macula_nat.gateway import OBSERVER, Gateway, GatewayConfig, open_gateway
from macula_nat.identity import KeyFileError, NodeKey
from macula_nat.nat.observer import ObserverRef
from macula_nat.net.address import Address
from macula_nat.net.endpoint import UdpStack
from macula_nat.web import gateway_app, serve_page

__all__ = ["add_gateway_parser", "gateway_main", "run_gateway"]

logger = logging.getLogger(__name__)

_DESCRIPTION = """\
Run what a public node runs, in one supervision tree: a STUN observer on --listen (a full
RFC 5780 server with --alt), a relay on the relay port, a Mainline DHT node on the DHT port
(bootstrapped from --bootstrap), and the relay registry announcing the relay through the DHT.
Runs until Ctrl-C."""


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 0xFFFF:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1-65535)")
    return int(text)


def add_gateway_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add ``gateway`` to ``subparsers``; parsed arguments carry ``handler=run_gateway``."""
    parser = subparsers.add_parser(
        "gateway",
        help="run a public node: observer, relay and DHT node",
        description=_DESCRIPTION,
    )
    parser.add_argument(
        "--listen",
        required=True,
        type=address_argument,
        metavar="IP:PORT",
        help="the observer's address, e.g. 203.0.113.10:3478; relay and DHT on the same IP",
    )
    parser.add_argument(
        "--alt",
        dest="alternate",
        type=address_argument,
        metavar="IP:PORT",
        help="the observer's alternate address (another IP and port): RFC 5780",
    )
    parser.add_argument(
        "--relay-port",
        type=_port,
        metavar="N",
        help="the relay's port (default: the port after the observer's highest)",
    )
    parser.add_argument(
        "--dht-port",
        type=_port,
        metavar="N",
        help="the DHT node's port (default: the one after the relay's)",
    )
    parser.add_argument(
        "--bootstrap",
        type=address_argument,
        nargs="+",
        default=[],
        metavar="IP:PORT",
        help="DHT nodes to join through (other gateways' DHT ports)",
    )
    parser.add_argument(
        "--key",
        type=Path,
        metavar="FILE",
        help="the node key file, created if missing (default: a new key for this run)",
    )
    parser.add_argument(
        "--web",
        type=address_argument,
        metavar="IP:PORT",
        help="serve the gateway's live status page there (e.g. 127.0.0.1:8080)",
    )
    parser.set_defaults(handler=run_gateway)
    return parser


def config_from_args(args: argparse.Namespace) -> GatewayConfig:
    """The gateway the parsed ``args`` describe; ValueError for an impossible one."""
    return GatewayConfig(
        listen=args.listen,
        alternate=args.alternate,
        relay_port=args.relay_port,
        dht_port=args.dht_port,
        bootstrap=tuple(args.bootstrap),
    )


def run_gateway(args: argparse.Namespace) -> int:
    """Run the gateway ``args`` describe until Ctrl-C.

    Returns 0 after Ctrl-C, 1 when it cannot start (impossible addresses or ports, an address
    the system refuses, an unreadable key file), with the reason logged.
    """
    try:
        config = config_from_args(args)
        key = NodeKey.load_or_create(args.key) if args.key is not None else NodeKey.generate()
    except (ValueError, KeyFileError, OSError) as exc:
        logger.error("gateway not started: %s", exc)
        return 1
    main = functools.partial(gateway_main, config, key, web=args.web)
    return run_until_interrupted(main, "gateway", (StartFailed, ValueError, OSError))


async def gateway_main(
    config: GatewayConfig,
    key: NodeKey,
    *,
    stack: UdpStack | None = None,
    web: Address | None = None,
    task_status: trio.TaskStatus[Gateway] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a gateway (and its status page at ``web``) until cancelled; with ``nursery.start``
    it reports the running gateway."""
    registry = Registry()
    async with (
        open_gateway(config, stack=stack, key=key, registry=registry) as gateway,
        trio.open_nursery() as nursery,
    ):
        if web is not None:
            page = gateway_app(gateway, functools.partial(_observer, registry))
            await nursery.start(serve_page, page, web)
        task_status.started(gateway)
        await trio.sleep_forever()


def _observer(registry: Registry) -> ObserverRef | None:
    ref = registry.whereis(OBSERVER)
    return ref if isinstance(ref, ObserverRef) else None
