"""Counting the Trio tasks a status page runs (its server's and its streams')."""

from __future__ import annotations

import trio

PAGE_MODULES = ("macula_nat.web", "hypercorn", "starlette", "anyio")


def all_tasks() -> list[trio.lowlevel.Task]:
    """Every task of this run, from the root down through every nursery."""
    found: list[trio.lowlevel.Task] = []
    waiting = [trio.lowlevel.current_root_task()]
    while waiting:
        task = waiting.pop()
        if task is None:
            continue
        found.append(task)
        for nursery in task.child_nurseries:
            waiting.extend(nursery.child_tasks)
    return found


def page_tasks() -> list[str]:
    """The names of the tasks the page's code runs (the node's own tasks come and go)."""
    return sorted(t.name for t in all_tasks() if t.name.startswith(PAGE_MODULES))
