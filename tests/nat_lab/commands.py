"""Running commands for the lab: bounded in time, inside a namespace when asked."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import trio

logger = logging.getLogger(__name__)

COMMAND_TIMEOUT_S = 30.0
"""Upper bound for one command of the harness itself."""

WIRE_READY = b"ready\n"
"""What the userspace wire (:mod:`tests.nat_lab.wire`) prints once it forwards frames."""

_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


class LabError(RuntimeError):
    """A lab command failed, or the lab cannot be used on this machine."""


def netns_argv(netns: str, argv: Sequence[str]) -> list[str]:
    """``argv`` wrapped so that it runs inside network namespace ``netns``."""
    return ["ip", "netns", "exec", netns, *argv]


def python_argv(args: Sequence[str]) -> list[str]:
    """This interpreter (the project's venv python) with ``args``, e.g. ``["-m", "mod"]``."""
    return [sys.executable, *args]


def python_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for python run by the lab: this package importable, output unbuffered."""
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(_PACKAGE_ROOT) + (os.pathsep + path if path else "")
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


async def run_checked(
    argv: Sequence[str], *, stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` capturing its output; raise :class:`LabError` on failure, or when it takes
    longer than :data:`COMMAND_TIMEOUT_S`."""
    try:
        with trio.fail_after(COMMAND_TIMEOUT_S):
            result = await trio.run_process(
                list(argv), stdin=stdin, capture_stdout=True, capture_stderr=True, check=False
            )
    except trio.TooSlowError:
        raise LabError(f"{argv[:6]!r} did not finish within {COMMAND_TIMEOUT_S} s") from None
    except OSError as exc:
        raise LabError(f"cannot run {argv[0]!r}: {exc}") from exc
    if result.returncode != 0:
        err = result.stderr.decode(errors="replace").strip()
        raise LabError(f"{list(argv[:6])!r} exited with {result.returncode}: {err}")
    return result
