"""``macula-nat gateway --listen IP:PORT [--alt IP:PORT] [--listen6 [IP]:PORT] ...``: run a
gateway until interrupted.

:func:`run_gateway` (the parser's handler, :func:`macula_nat.cli.parsers.add_gateway_parser`)
runs :func:`gateway_main` under ``trio.run`` until Ctrl-C.
"""

from __future__ import annotations

import argparse
import functools
import logging

import trio

from macula_nat.actors import Registry, StartFailed
from macula_nat.cli.running import run_until_interrupted
from macula_nat.gateway import OBSERVER, Gateway, GatewayConfig, open_gateway
from macula_nat.identity import KeyFileError, NodeKey
from macula_nat.nat.observer import ObserverRef
from macula_nat.net.address import Address
from macula_nat.net.endpoint import UdpStack
from macula_nat.relay import TcpRelayConfig
from macula_nat.web import gateway_app, serve_page

__all__ = ["config_from_args", "gateway_main", "run_gateway"]

logger = logging.getLogger(__name__)


def config_from_args(args: argparse.Namespace) -> GatewayConfig:
    """The gateway the parsed ``args`` describe; ValueError for an impossible one."""
    return GatewayConfig(
        listen=args.listen,
        alternate=args.alternate,
        listen6=args.listen6,
        alternate6=args.alternate6,
        relay_port=args.relay_port,
        dht_port=args.dht_port,
        bootstrap=tuple(args.bootstrap),
        relay_tcp=TcpRelayConfig(port=args.relay_tcp_port) if args.relay_tcp else None,
        landmarks=tuple(args.landmarks),
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
