"""A node with (or without) port mapping, for the port-mapping lab test: ``python -m
tests.lab.portmap_node --observer IP:PORT --bootstrap IP:PORT [--port-mapping PROTOCOL]
[--connect NODE_ID]``, run in a lab host's namespace.

It prints JSON lines: ``ready`` (node id, NAT type, public address), ``mapped`` once its record
carries the port mapping (with ``--port-mapping``), ``connected`` and ``method`` (each change of
the connection's method), ``message``; as a listener it answers ``ping`` with ``pong`` and stops
when ``quit`` arrives on stdin, printing ``stopped`` with its port mapper's statistics.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

import attrs
import trio

from macula_nat.cli.arguments import address_argument
from macula_nat.connection import Connection
from macula_nat.dht.config import DhtConfig
from macula_nat.identity import NodeId, NodeKey
from macula_nat.portmap import PortMapConfig, Protocol
from macula_nat.system import NatConfig, NatSystem, open_nat_system

STEP_TIMEOUT_S = 30.0


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}, default=str), flush=True)


async def watch(connection: Connection) -> None:
    while True:
        await connection.method.wait_transition()
        emit("method", method=str(connection.method.value))


async def published_mapping(nat: NatSystem) -> list[Any]:
    """Wait until this node's record (as the DHT returns it) carries the port mapping."""
    while True:
        profile = nat.detector.profile.value
        if profile is not None and profile.mapped is not None:
            record = await nat.directory.resolve_record(nat.node_id.text())
            if record is not None and record.profile is not None and record.profile.mapped:
                return list(record.profile.mapped)
        await trio.sleep(0.2)


async def main(args: argparse.Namespace) -> None:
    mapping = None
    if args.port_mapping is not None:
        mapping = PortMapConfig(protocols=(Protocol(args.port_mapping),))
    config = NatConfig(
        observers=(args.observer,),
        dht=DhtConfig(bootstrap=(args.bootstrap,), read_only=True),
        key=NodeKey.generate(),
        port_mapping=mapping,
    )
    async with open_nat_system(config) as nat:
        with trio.fail_after(STEP_TIMEOUT_S):
            profile, _ = await nat.wait_ready()
            emit("ready", node_id=nat.node_id.text(), nat_type=profile.nat_type,
                 public=list(profile.public_address))  # fmt: skip
            if mapping is not None:
                emit("mapped", mapped=await published_mapping(nat))
        async with trio.open_nursery() as nursery:
            if args.connect is not None:
                with trio.fail_after(STEP_TIMEOUT_S):
                    connection = await nat.connector.connect(NodeId.from_text(args.connect))
                emit("connected", method=str(connection.method.value))
                nursery.start_soon(watch, connection)
                with trio.fail_after(STEP_TIMEOUT_S):
                    await connection.send_message(b"ping")
                    emit("message", text=(await connection.receive_message()).decode())
                await trio.sleep(2.0)
                emit("final", method=str(connection.method.value))
                await connection.aclose()
                nursery.cancel_scope.cancel()
            else:
                connection = await nat.connector.accept()
                emit("connected", method=str(connection.method.value))
                nursery.start_soon(watch, connection)

                async def serve() -> None:
                    while True:
                        text = (await connection.receive_message()).decode()
                        emit("message", text=text)
                        await connection.send_message(b"pong")

                nursery.start_soon(serve)
                while (await trio.to_thread.run_sync(sys.stdin.readline)).strip() != "quit":
                    pass
                nursery.cancel_scope.cancel()
        mapper = nat.port_mapper
    stats = None if mapper is None else attrs.asdict(mapper.statistics(), recurse=True)
    emit("stopped", statistics=stats)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--observer", type=address_argument, required=True)
    parser.add_argument("--bootstrap", type=address_argument, required=True)
    parser.add_argument("--port-mapping", choices=[p.value for p in Protocol])
    parser.add_argument("--connect")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s")  # fmt: skip
    trio.run(main, parser.parse_args())
