"""Many relayed connections through one relay while actors are killed at random (issue 11).

The load of the ``attack_load`` bench and, scaled down, of ``test_crash_recovery.py``, with the
counts both take of a run (its tasks, its live objects). Run it under ``MockClock``: on the
simulated internet, ``CLIENTS`` nodes each connect to ``PER_CLIENT`` of ``SERVERS`` nodes over
the gateway's relay (no punching: every datagram goes through the one relay), 1,000 connections
in all. For ``DURATION`` simulated seconds both ends of every connection send a numbered message
every ``INTERVAL`` seconds, while every ``KILL_EVERY`` seconds one actor is killed (cancelled
where it stands): a relay session on the relay, a node's relay registry or a node's coordinator.
Then the senders stop and what is in flight drains.

What it measures (issue 11, the load test):

- on connections whose owner survived (no session or coordinator kill touched them), whether a
  message is lost or delivered twice, and how long each took (bound: 5 s);
- on a connection whose owner was killed, whether both ends fail with a clear error
  (``ConnectionFailed`` with its reason), and how long after the kill (bound: 5 s);
- the tasks and live objects once the load stops, against before it started.
"""

from __future__ import annotations

import collections
import gc
import logging
import random
import time
from typing import Final

import attrs
import trio

from macula_nat.connection import Connection, ConnectionFailed
from macula_nat.identity import NodeId
from macula_nat.net.sim import Preset
from macula_nat.system import NatSystem

from .world import RELAY, open_world

CLIENTS: Final = 63
SERVERS: Final = 63
PER_CLIENT: Final = 16
CONNECTIONS: Final = 1000
DURATION: Final = 60.0
INTERVAL: Final = 5.0
KILL_EVERY: Final = 2.0
DRAIN: Final = 10.0
BOUND: Final = 5.0
"""Seconds within which a message arrives or its connection fails (issue 11)."""
SEED: Final = 11

logger = logging.getLogger(__name__)


@attrs.define(eq=False)
class _End:
    """One end of a connection: what it sent and received."""

    connection: Connection
    sent: int = 0
    received: int = 0
    duplicated: int = 0
    reordered: int = 0
    max_latency: float = 0.0
    failed_at: float | None = None
    failure: str | None = None


@attrs.define(eq=False)
class _Pair:
    client: NatSystem
    server: NatSystem
    ends: tuple[_End, _End]
    killed_at: float | None = None
    """When a kill took this connection's owner (a relay session or a coordinator)."""


@attrs.frozen
class LoadReport:
    connections: int
    sent: int
    delivered: int
    lost: int
    """On connections whose owner survived."""
    duplicated: int
    reordered: int
    kills: dict[str, int]
    survivors: int
    failed: int
    unexpected_failures: int
    """Connections that failed although no kill took their owner."""
    max_latency: float
    """Longest a message took on a connection whose owner survived (seconds, simulated)."""
    max_time_to_fail: float
    """Longest from a kill to the error on an end of a connection it took."""
    silent_ends: int
    """Ends of taken connections that had not failed after the drain."""
    errors: dict[str, int]
    tasks_before: int
    tasks_after: int
    objects_before: int
    objects_after: int
    wall_seconds: float


def tasks_alive() -> int:
    """Every task of this run (a walk of the task tree from the root)."""
    found = 0
    pending = [trio.lowlevel.current_root_task()]
    while pending:
        task = pending.pop()
        assert task is not None
        found += 1
        pending.extend(child for nursery in task.child_nurseries for child in nursery.child_tasks)
    return found


def live_objects() -> int:
    """Objects the garbage collector tracks, after a full collection."""
    gc.collect()
    return len(gc.get_objects())


@attrs.frozen
class Census:
    """What a run holds at one moment."""

    tasks: int
    objects: int


def census() -> Census:
    return Census(tasks_alive(), live_objects())


async def _sender(end: _End, interval: float, rng: random.Random) -> None:
    await trio.sleep(rng.random() * interval)
    while end.failed_at is None:
        try:
            await end.connection.send_message(b"%d %r" % (end.sent, trio.current_time()))
        except (ConnectionFailed, trio.ClosedResourceError) as exc:
            _fail(end, exc)
            return
        end.sent += 1
        await trio.sleep(interval)


async def _receiver(end: _End) -> None:
    while True:
        try:
            message = await end.connection.receive_message()
        except (ConnectionFailed, trio.ClosedResourceError) as exc:
            _fail(end, exc)
            return
        number, sent_at = message.split()
        seq = int(number)
        if seq < end.received:
            end.duplicated += 1
            continue
        if seq > end.received:
            end.reordered += 1
        end.received = seq + 1
        end.max_latency = max(end.max_latency, trio.current_time() - float(sent_at))


def _fail(end: _End, exc: BaseException) -> None:
    if end.failed_at is None:
        end.failed_at = trio.current_time()
        end.failure = f"{type(exc).__name__}: {exc}".split(" (")[0]


async def load(
    clients: int = CLIENTS,
    servers: int = SERVERS,
    per_client: int = PER_CLIENT,
    connections: int = CONNECTIONS,
    duration: float = DURATION,
    interval: float = INTERVAL,
    kill_every: float = KILL_EVERY,
    seed: int = SEED,
) -> LoadReport:
    """The load described in the module docstring; run it under ``MockClock``."""
    rng = random.Random(seed)
    started = time.perf_counter()
    async with open_world(seed) as world:
        await world.relay.enable(
            max_sessions=connections + 100, max_sessions_per_node=per_client + 4
        )
        nodes = [
            await world.node(Preset.PORT_RESTRICTED_CONE, f"n{i}", home_relay=RELAY)
            for i in range(clients + servers)
        ]
        client_nodes, server_nodes = nodes[:clients], nodes[clients:]
        wanted = [
            (client, server_nodes[(i + j) % servers])
            for i, client in enumerate(client_nodes)
            for j in range(per_client)
        ][:connections]
        accepted: dict[tuple[NodeId, NodeId], Connection] = {}
        outbound: dict[tuple[NodeId, NodeId], Connection] = {}
        limiter = trio.CapacityLimiter(32)
        all_accepted = trio.Event()

        async def accept_all(server: NatSystem) -> None:
            while True:
                connection = await server.connector.accept()
                accepted[(connection.peer_id, server.node_id)] = connection
                if len(accepted) == len(wanted):
                    all_accepted.set()

        async def connect(client: NatSystem, server: NatSystem) -> None:
            async with limiter:
                outbound[(client.node_id, server.node_id)] = await client.connector.connect(
                    server.node_id, prefer_direct=False
                )

        async with trio.open_nursery() as acceptors:
            for server in server_nodes:
                acceptors.start_soon(accept_all, server)
            async with trio.open_nursery() as connecting:
                for client, server in wanted:
                    connecting.start_soon(connect, client, server)
            await all_accepted.wait()
            acceptors.cancel_scope.cancel()
        pairs = [
            _Pair(
                client,
                server,
                (
                    _End(outbound[(client.node_id, server.node_id)]),
                    _End(accepted[(client.node_id, server.node_id)]),
                ),
            )
            for client, server in wanted
        ]
        await trio.sleep(1.0)
        before = census()
        logger.info("%d connections up; load starts", len(pairs))

        kills: collections.Counter[str] = collections.Counter()
        recently: dict[NodeId, float] = {}

        def victim() -> NatSystem:
            now = trio.current_time()
            for _ in range(100):
                node = rng.choice(nodes)
                if now - recently.get(node.node_id, -1e9) > 10.0:  # under the restart intensity
                    recently[node.node_id] = now
                    return node
            raise RuntimeError("no node left to kill")

        def kill_one() -> None:
            kind = rng.choice(("relay session", "registry", "coordinator"))
            now = trio.current_time()
            if kind == "relay session":
                live = [p for p in pairs if p.killed_at is None]
                pair = rng.choice(live)
                link = pair.ends[0].connection.link
                session = None if link is None else link.relay
                found = [s for s in world.relay.sessions() if session and s.id == session.id]
                if not found or found[0].actor is None:
                    return
                found[0].actor._kill()
                pair.killed_at = now
            else:
                node = victim()
                handle = node.relays if kind == "registry" else node.coordinator
                server = handle.server
                if server is None:
                    return
                server._kill()
                if kind == "coordinator":
                    for pair in pairs:
                        if pair.killed_at is None and node in (pair.client, pair.server):
                            pair.killed_at = now
            kills[kind] += 1

        async with trio.open_nursery() as running:
            for pair in pairs:
                for end in pair.ends:
                    running.start_soon(_receiver, end)
            async with trio.open_nursery() as senders:
                for pair in pairs:
                    for end in pair.ends:
                        senders.start_soon(_sender, end, interval, random.Random(rng.random()))
                with trio.move_on_after(duration):
                    while True:
                        await trio.sleep(kill_every)
                        kill_one()
                senders.cancel_scope.cancel()
            await trio.sleep(DRAIN)
            running.cancel_scope.cancel()
        await trio.sleep(1.0)
        after = census()
        wall = time.perf_counter() - started

    return _report(pairs, dict(kills), before, after, wall)


def _report(
    pairs: list[_Pair],
    kills: dict[str, int],
    before: Census,
    after: Census,
    wall: float,
) -> LoadReport:
    """What the ends of ``pairs`` saw, summed: traffic on the connections whose owner survived
    (each direction a sender and its receiver), failures on those a kill took."""
    survived = [pair for pair in pairs if pair.killed_at is None]
    directions = [(a, b) for pair in survived for a, b in (pair.ends, pair.ends[::-1])]
    taken = [
        (pair.killed_at, end) for pair in pairs if pair.killed_at is not None for end in pair.ends
    ]
    told = [
        (end.failed_at - killed_at, end.failure)
        for killed_at, end in taken
        if end.failed_at is not None
    ]
    return LoadReport(
        connections=len(pairs),
        sent=sum(sender.sent for sender, _ in directions),
        delivered=sum(receiver.received for _, receiver in directions),
        lost=sum(sender.sent - receiver.received for sender, receiver in directions),
        duplicated=sum(receiver.duplicated for _, receiver in directions),
        reordered=sum(receiver.reordered for _, receiver in directions),
        kills=kills,
        survivors=len(survived),
        failed=len(pairs) - len(survived),
        unexpected_failures=sum(
            any(end.failed_at is not None for end in pair.ends) for pair in survived
        ),
        max_latency=max((receiver.max_latency for _, receiver in directions), default=0.0),
        max_time_to_fail=max((seconds for seconds, _ in told), default=0.0),
        silent_ends=len(taken) - len(told),
        errors=dict(collections.Counter(failure or "?" for _, failure in told)),
        tasks_before=before.tasks,
        tasks_after=after.tasks,
        objects_before=before.objects,
        objects_after=after.objects,
        wall_seconds=wall,
    )
