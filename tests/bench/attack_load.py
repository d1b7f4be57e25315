"""Under attack: many relayed connections through one relay while actors are killed at random.

On the simulated internet (under ``MockClock``, in a thread of its own: simulated seconds cost
only the CPU they use), ``CLIENTS`` nodes each connect to ``PER_CLIENT`` of ``SERVERS`` nodes
over the gateway's relay (no punching: every datagram goes through the one relay), 1,000
connections in all. For ``DURATION`` simulated seconds both ends of every connection send a
numbered message every ``INTERVAL`` seconds, while every ``KILL_EVERY`` seconds one actor is
killed (cancelled where it stands): a relay session on the relay, a node's relay registry or a
node's coordinator. Then the senders stop and what is in flight drains.

What it checks (issue 11, the load test):

- on connections whose owner survived (no session or coordinator kill touched them), no message
  is lost or delivered twice, and each arrives within 5 s (a registry kill costs a moment);
- a connection whose owner was killed fails on both ends with a clear error (``ConnectionFailed``
  with its reason) within 5 s of the kill;
- once the load stops, the tasks and live objects are no more than before it started.
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
from trio.testing import MockClock

from macula_nat.connection import Connection, ConnectionFailed
from macula_nat.identity import NodeId
from macula_nat.net.sim import Preset
from macula_nat.sim_world import RELAY, open_world
from macula_nat.system import NatSystem

from .timing import Figure

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


def _tasks() -> int:
    found = 0
    pending = [trio.lowlevel.current_root_task()]
    while pending:
        task = pending.pop()
        assert task is not None
        found += 1
        pending.extend(child for nursery in task.child_nurseries for child in nursery.child_tasks)
    return found


def _objects() -> int:
    gc.collect()
    return len(gc.get_objects())


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
        tasks_before, objects_before = _tasks(), _objects()
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
        tasks_after, objects_after = _tasks(), _objects()
        wall = time.perf_counter() - started

    sent = delivered = lost = duplicated = reordered = 0
    max_latency = max_time_to_fail = 0.0
    silent = unexpected = failed = 0
    errors: collections.Counter[str] = collections.Counter()
    for pair in pairs:
        a, b = pair.ends
        if pair.killed_at is None:
            if a.failed_at is not None or b.failed_at is not None:
                unexpected += 1
            for sender, receiver in ((a, b), (b, a)):
                sent += sender.sent
                delivered += receiver.received
                lost += sender.sent - receiver.received
                duplicated += receiver.duplicated
                reordered += receiver.reordered
                max_latency = max(max_latency, receiver.max_latency)
        else:
            failed += 1
            for end in pair.ends:
                if end.failed_at is None:
                    silent += 1
                else:
                    max_time_to_fail = max(max_time_to_fail, end.failed_at - pair.killed_at)
                    errors[end.failure or "?"] += 1
    return LoadReport(
        connections=len(pairs),
        sent=sent,
        delivered=delivered,
        lost=lost,
        duplicated=duplicated,
        reordered=reordered,
        kills=dict(kills),
        survivors=len(pairs) - failed,
        failed=failed,
        unexpected_failures=unexpected,
        max_latency=max_latency,
        max_time_to_fail=max_time_to_fail,
        silent_ends=silent,
        errors=dict(errors),
        tasks_before=tasks_before,
        tasks_after=tasks_after,
        objects_before=objects_before,
        objects_after=objects_after,
        wall_seconds=wall,
    )


def _simulated() -> LoadReport:
    return trio.run(load, clock=MockClock(autojump_threshold=0))


async def run() -> list[Figure]:
    report = await trio.to_thread.run_sync(_simulated)
    for kind, count in sorted(report.errors.items()):
        logger.info("error seen %d times: %s", count, kind)
    kills = report.kills
    return [
        Figure("under attack: relayed connections through one relay", report.connections, "conns"),
        Figure("under attack: kills of relay sessions", kills.get("relay session", 0), "kills"),
        Figure("under attack: kills of relay registries", kills.get("registry", 0), "kills"),
        Figure("under attack: kills of coordinators", kills.get("coordinator", 0), "kills"),
        Figure("under attack: connections taken by a kill (fail)", report.failed, "conns"),
        Figure("under attack: messages sent on surviving connections", report.sent, "msgs"),
        Figure("under attack: messages delivered, surviving connections", report.delivered, "msgs"),
        Figure(
            "under attack: messages lost on surviving connections", report.lost, "msgs", goal="== 0"
        ),
        Figure(
            "under attack: messages duplicated, surviving connections",
            report.duplicated,
            "msgs",
            goal="== 0",
        ),
        Figure(
            "under attack: surviving connections that failed anyway",
            report.unexpected_failures,
            "conns",
            goal="== 0",
        ),
        Figure(
            "under attack: max message latency, surviving connections",
            report.max_latency,
            "s (sim)",
            goal="<= 5 s",
        ),
        Figure(
            "under attack: max kill-to-error time, taken connections",
            report.max_time_to_fail,
            "s (sim)",
            goal="<= 5 s",
        ),
        Figure(
            "under attack: ends of taken connections never told",
            report.silent_ends,
            "ends",
            goal="== 0",
        ),
        Figure(
            "under attack: tasks after the load, vs before",
            report.tasks_after,
            "tasks",
            report.tasks_before,
            "<= 1.0x",
        ),
        Figure(
            "under attack: live objects after the load, vs before",
            report.objects_after,
            "objects",
            report.objects_before,
            "<= 1.0x",
        ),
        Figure("under attack: wall time of the load run", report.wall_seconds, "s"),
    ]
