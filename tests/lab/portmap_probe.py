"""Run a PortMapper for one protocol in a lab host's namespace: ``python -m
tests.lab.portmap_probe PROTOCOL --seconds S``.

It finds the gateway from the host's route table (``/proc/net/route``), asks for a mapping of
a socket of its own for ``S`` seconds, stops (deleting any mapping), and prints one JSON line:
the gateway, the mapping it held (if any) and its statistics. Its log goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

import attrs
import trio

from macula_nat.actors import open_actor
from macula_nat.net.real import RealUdpStack
from macula_nat.portmap.client import PortMapConfig, PortMapper, PortMapperServer, Protocol


async def main(protocol: Protocol, seconds: float) -> None:
    stack = RealUdpStack()
    async with await stack.bind(("0.0.0.0", 0)) as node:
        config = PortMapConfig(protocols=(protocol,), request_timeout=1.0, http_timeout=2.0)
        mapper = PortMapper(stack, node.local_address[1], config)
        held = None
        async with open_actor(PortMapperServer(mapper)):
            with trio.move_on_after(seconds):
                held = await mapper.mapping.wait_value(lambda m: m is not None)
                await trio.sleep(seconds)
        stats = attrs.asdict(mapper.statistics(), recurse=True)
        print(json.dumps({"gateway": mapper.gateway, "held": None if held is None else
                          attrs.asdict(held), "statistics": stats}, default=str),
              flush=True)  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("protocol", type=Protocol)
    parser.add_argument("--seconds", type=float, default=4.0)
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(name)s: %(message)s")
    trio.run(main, arguments.protocol, arguments.seconds)
