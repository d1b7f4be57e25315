"""Under attack: many relayed connections through one relay while actors are killed at random.

The load of :mod:`tests.traversal.relayed_load` at full size (1,000 connections, 60 simulated
seconds, a kill every 2 s), on the simulated internet under ``MockClock`` in a thread of its
own (simulated seconds cost only the CPU they use): what the kills took, what the surviving
connections lost, how soon the taken ones failed, and the tasks and objects left after.
"""

from __future__ import annotations

import logging

import trio
from trio.testing import MockClock

from ..traversal.relayed_load import LoadReport, load
from .timing import Figure

logger = logging.getLogger(__name__)


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
