"""Namespace names owned by this process: ``mnl<pid>-<n>-...``, one ``<n>`` per lab or probe."""

from __future__ import annotations

import itertools
import os
import threading
from pathlib import Path

NETNS_DIR = Path("/run/netns")

_counter = itertools.count(1)
_active: set[str] = set()
_lock = threading.Lock()


def own_prefix() -> str:
    """The prefix of every namespace this process creates."""
    return f"mnl{os.getpid()}-"


def claim_prefix() -> str:
    """A fresh per-lab prefix, marked active until :func:`release_prefix`."""
    with _lock:
        prefix = f"{own_prefix()}{next(_counter)}"
        _active.add(prefix)
    return prefix


def release_prefix(prefix: str) -> None:
    """Mark ``prefix`` as no longer in use by a live lab."""
    with _lock:
        _active.discard(prefix)


def leftover_namespaces() -> list[str]:
    """Namespaces named with this process's prefix that no live lab or probe owns.

    They come from an earlier process that had the same pid, or from a failed teardown.
    """
    try:
        names = [p.name for p in NETNS_DIR.iterdir()]
    except FileNotFoundError:
        return []
    own = own_prefix()
    with _lock:
        active = tuple(p + "-" for p in _active)
    return sorted(n for n in names if n.startswith(own) and not n.startswith(active))


def existing_namespaces(names: list[str] | tuple[str, ...]) -> list[str]:
    """Those of ``names`` that currently exist."""
    return [n for n in names if (NETNS_DIR / n).exists()]
