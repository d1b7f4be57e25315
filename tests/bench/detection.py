"""Detection wall time per lab preset: our detector side by side with coturn's natdiscovery.

Both clients run behind the same NAT, one lab site per preset, against the same server: coturn's
``turnserver`` as an RFC 5780 server, neutral ground and the server natdiscovery is made for.
NAT state is reset before
every run. Each figure is natdiscovery's seconds ("nd") with ours as the baseline, so the ratio
is natdiscovery / ours. natdiscovery is always its whole command, ``turnutils_natdiscovery -m
-f`` started inside the host's namespace; ours runs with default settings (5 s timeout,
hairpinning and allocation tests included, which natdiscovery's ``-m -f`` does not run), as

- ``whole``: ``python -m macula_nat detect --json`` started the same way, paying Python's
  start-up and imports;
- ``in-proc``: ``detector.detect()`` alone, timed inside the Python process.

natdiscovery waits a fixed 3 s for each unanswered test, one test after another; ours waits a
few RTOs of the RTT measured on the tests that are answered (:mod:`macula_nat.nat.rtt`), every
test at once. Goal: at least 10x faster on every preset whose NAT filters (some test goes
unanswered by design), never slower on open ones (no NAT, full cone). Both must agree on NAT
presence, mapping and filtering (natdiscovery does not classify allocation); a disagreement is
flagged in the figure and printed.

Needs the real-NAT lab (root) and coturn; without them ``run`` prints why and returns nothing.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from tests.lab.detection_support import (
    DEFAULT_TIMEOUT_S,
    RUN_MARGIN_S,
    coturn_missing,
    run_detector,
    run_natdiscovery,
    start_coturn,
)
from tests.nat_lab import UDP_PRESETS, Host, Lab, LabError, NatPreset, lab_available, open_lab

from .timing import Figure, now

ROUNDS = 2
"""Runs per preset of each measurement; the fastest counts."""
FILTERING_GOAL = 10.0
"""natdiscovery / ours on presets whose NAT filters."""
OPEN_GOAL = 1.0
"""natdiscovery / ours on open presets: never slower."""

_IN_PROCESS = """\
import json, sys, time
import trio
from macula_nat.actors import open_actor
from macula_nat.nat.detector import NatDetector, NatDetectorServer
from macula_nat.cli.arguments import parse_address
from macula_nat.net.real import RealUdpStack

async def main(observer):
    detector = NatDetector(RealUdpStack(), (observer,), refresh_interval=None)
    async with open_actor(NatDetectorServer(detector)):
        start = time.perf_counter()
        profile = await detector.detect()
        return time.perf_counter() - start, profile

seconds, profile = trio.run(main, parse_address(sys.argv[1]))
print(json.dumps({"seconds": seconds, "profile": profile.to_json()}))
"""
"""Our detection timed inside the process: ``detector.detect()`` alone, default settings, as
the CLI runs it."""

Verdict = dict[str, object] | str
"""NAT presence, mapping and filtering, or why there is none."""


def _our_verdict(profile: Any) -> Verdict:
    if not isinstance(profile, dict):
        return str(profile)
    return {
        "nat": profile["nat_present"],
        "mapping": profile["mapping"],
        "filtering": profile["filtering"],
    }


async def _reset(host: Host, lab: Lab) -> None:
    for site in lab.sites:
        if site.index == host.site_index and site.router is not None:
            await site.router.reset_nat_state()


async def _natdiscovery(host: Host, observer: str) -> tuple[float, Verdict]:
    start = now()
    verdict = await run_natdiscovery(host, observer)
    return now() - start, verdict


async def _ours_whole(host: Host, observer: str) -> tuple[float, Verdict]:
    start = now()
    profile = await run_detector(host, observer, None)
    return now() - start, _our_verdict(profile)


async def _in_process(host: Host, observer: str) -> tuple[float, Verdict]:
    args = ["-c", _IN_PROCESS, observer]
    with trio.fail_after(1.5 * DEFAULT_TIMEOUT_S + RUN_MARGIN_S):
        done = await host.run_python(args, check=False)
    if done.returncode != 0:
        return float("nan"), f"detection failed: {done.stderr.decode().strip()}"
    result = json.loads(done.stdout)
    return float(result["seconds"]), _our_verdict(result["profile"])


Runner = Callable[[Host, str], Awaitable[tuple[float, Verdict]]]


async def _fastest(
    lab: Lab, observer: str, run: Runner, *, rounds: int, concurrently: bool = False
) -> dict[NatPreset, tuple[float, Verdict]]:
    """The fastest of ``rounds`` runs per preset and its verdict (marked unstable if the rounds
    disagree), NAT state reset before each; presets one after another unless ``concurrently``."""
    best: dict[NatPreset, tuple[float, Verdict]] = {}

    async def one(host: Host) -> None:
        await _reset(host, lab)
        seconds, verdict = await run(host, observer)
        previous = best.get(host.preset)
        if previous is not None:
            if previous[1] != verdict:
                verdict = f"unstable: {previous[1]}, then {verdict}"
            seconds = min(seconds, previous[0])
        best[host.preset] = (seconds, verdict)

    for _ in range(rounds):
        if concurrently:
            async with trio.open_nursery() as nursery:
                for host in lab.hosts:
                    nursery.start_soon(one, host)
        else:
            for host in lab.hosts:
                await one(host)
    return best


_LABELS = ("whole", "in-proc")


def _goal(preset: NatPreset) -> float:
    """The ratio to reach: open presets (no test unanswered) only must not be slower."""
    return OPEN_GOAL if preset.expected.filtering == "ei" else FILTERING_GOAL


def _figures(
    theirs: dict[NatPreset, tuple[float, Verdict]],
    ours: tuple[dict[NatPreset, tuple[float, Verdict]], ...],
) -> list[Figure]:
    figures = []
    for preset in UDP_PRESETS:
        seconds, verdict = theirs[preset]
        wanted = _goal(preset)
        for label, measured in zip(_LABELS, ours, strict=True):
            our_seconds, our_verdict = measured[preset]
            met = "met" if seconds >= wanted * our_seconds else "MISSED"
            goal = f">= {wanted:g}x, same answer: {met}"
            if our_verdict != verdict:
                goal = f"{goal}; ANSWERS DIFFER: ours {our_verdict}, natdiscovery {verdict}"
                print(f"detection {preset.value} ({label}): {goal}", flush=True)
            figures.append(
                Figure(
                    f"detect {preset.value:<20} nd vs ours, {label}",
                    seconds,
                    "s",
                    our_seconds,
                    goal,
                )
            )
    return figures


async def _measure(lab: Lab, workdir: Path) -> list[Figure]:
    observer = await start_coturn(lab, workdir)
    # natdiscovery spends its time waiting for answers that never come: the presets can share
    # the machine. Ours is timed one preset at a time, so that Python start-ups do not compete.
    theirs = await _fastest(lab, observer, _natdiscovery, rounds=ROUNDS, concurrently=True)
    whole = await _fastest(lab, observer, _ours_whole, rounds=ROUNDS)
    in_process = await _fastest(lab, observer, _in_process, rounds=ROUNDS)
    return _figures(theirs, (whole, in_process))


async def run() -> list[Figure]:
    ok, reason = await trio.to_thread.run_sync(lab_available)
    missing = coturn_missing()
    if not ok or missing:
        print(f"detection benchmark skipped: {reason or missing}", flush=True)
        return []
    print(
        "detection: server coturn turnserver (RFC 5780, two IPs); ours with default settings"
        f" (timeout {DEFAULT_TIMEOUT_S:g} s); whole command includes Python start-up for ours",
        flush=True,
    )
    try:
        with tempfile.TemporaryDirectory(prefix="macula-bench-") as workdir:
            async with open_lab(list(UDP_PRESETS)) as lab:
                return await _measure(lab, Path(workdir))
    except LabError as exc:
        print(f"detection benchmark skipped: {exc}", flush=True)
        return []


if __name__ == "__main__":

    async def _main() -> None:
        for figure in await run():
            print(figure.render(), flush=True)

    trio.run(_main)
