"""``macula-nat status --listen IP:PORT --observer ... --bootstrap ...``: run a node with its live
status page (NAT profile, connections, punches, cache, components, a connect form) until
Ctrl-C. The node joins through gateways as ``listen`` does; ``--node`` is its own socket."""

from __future__ import annotations

import argparse
import functools
import logging

import trio

from macula_nat.actors import StartFailed
from macula_nat.cli.connect import node_config
from macula_nat.cli.running import run_until_interrupted
from macula_nat.identity import KeyFileError, NodeKey
from macula_nat.net.address import Address
from macula_nat.system import NatConfig, NatSystem, open_nat_system
from macula_nat.web import app, serve_page

__all__ = ["run_status", "status_config", "status_main"]

logger = logging.getLogger(__name__)


def status_config(args: argparse.Namespace, key: NodeKey) -> NatConfig:
    """The node ``args`` describe (as ``listen`` runs it, on ``--node``)."""
    return node_config(argparse.Namespace(**{**vars(args), "listen": args.node}), key)


def run_status(args: argparse.Namespace) -> int:
    """Run the node and its page until Ctrl-C: 0 then, 1 when it cannot start."""
    try:
        key = NodeKey.load_or_create(args.key) if args.key is not None else NodeKey.generate()
        config = status_config(args, key)
    except (ValueError, KeyFileError, OSError) as exc:
        logger.error("status page not started: %s", exc)
        return 1
    main = functools.partial(status_main, config, args.listen)
    return run_until_interrupted(main, "status page", (StartFailed, ValueError, OSError))


async def status_main(
    config: NatConfig,
    web: Address,
    *,
    task_status: trio.TaskStatus[tuple[NatSystem, str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the node and its page at ``web`` until cancelled; with ``nursery.start`` it reports
    the running node and the page's URL."""
    async with open_nat_system(config) as system, trio.open_nursery() as nursery:
        url: str = await nursery.start(serve_page, app(system), web)
        logger.info("node %s: status page on %s", system.node_id.text(), url)
        task_status.started((system, url))
