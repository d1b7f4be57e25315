"""``open_lab``: build a real-NAT lab of network namespaces, yield it, always tear it down."""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Literal

import trio

from tests.nat_lab.availability import lab_available, netem_available, tun_available
from tests.nat_lab.commands import (
    WIRE_READY,
    LabError,
    netns_argv,
    python_argv,
    python_env,
    run_checked,
)
from tests.nat_lab.names import (
    claim_prefix,
    existing_namespaces,
    leftover_namespaces,
    release_prefix,
)
from tests.nat_lab.nodes import Host, Lab, Node, Router, Server, Site
from tests.nat_lab.presets import NatPreset
from tests.nat_lab.processes import ProcessGroup, kill_pids, pids_in_namespaces
from tests.nat_lab.topology import (
    SERVER_IPS6,
    LabPlan,
    LinkPlan,
    SiteConfig,
    needs_impairment,
    netns_scripts,
    plan_lab,
    root_batch,
    teardown_batch,
)

logger = logging.getLogger(__name__)

_WIRE_READY_TIMEOUT_S = 10.0
_TEARDOWN_TIMEOUT_S = 20.0


async def _run_all(argvs: Sequence[tuple[Sequence[str], bytes]]) -> None:
    """Run commands concurrently; raise one :class:`LabError` naming every failure."""
    errors: list[LabError] = []

    async def one(argv: Sequence[str], stdin: bytes) -> None:
        try:
            await run_checked(argv, stdin=stdin)
        except LabError as exc:
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        for argv, stdin in argvs:
            nursery.start_soon(one, argv, stdin)
    if errors:
        raise LabError("; ".join(str(e) for e in errors))


async def _start_wire(plan: LabPlan, link: LinkPlan, processes: ProcessGroup) -> None:
    args = [
        "-m",
        "tests.nat_lab.wire",
        link.port,
        link.netns,
        link.ifname,
        "--delay-ms",
        f"{link.delay_ms:g}",
        "--loss",
        f"{link.loss:g}",
        "--parent-pid",
        str(os.getpid()),
    ]
    process = await processes.start(
        netns_argv(plan.pub_netns, python_argv(args)),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        env=python_env(),
    )
    if process.stdout is None:
        raise LabError("wire started without a stdout pipe")
    seen = b""
    with trio.move_on_after(_WIRE_READY_TIMEOUT_S):
        while WIRE_READY not in seen:
            chunk = await process.stdout.receive_some(64)
            if not chunk:
                break
            seen += chunk
    if WIRE_READY not in seen:
        raise LabError(f"wire for {link.netns}/{link.ifname} did not start: {seen!r}")


async def _build(plan: LabPlan, processes: ProcessGroup) -> None:
    await run_checked(["ip", "-batch", "-"], stdin=root_batch(plan).encode())
    scripts = netns_scripts(plan)
    await _run_all([(netns_argv(ns, ["sh", "-ec", script]), b"") for ns, script in scripts.items()])
    errors: list[LabError] = []

    async def wire(link: LinkPlan) -> None:
        try:
            await _start_wire(plan, link, processes)
        except LabError as exc:
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        for link in plan.wire_links:
            nursery.start_soon(wire, link)
    if errors:
        raise LabError("; ".join(str(e) for e in errors))


async def _delete_namespaces(names: Sequence[str]) -> list[str]:
    """Kill anything still inside ``names``, then delete them; return those still there."""
    stray = await trio.to_thread.run_sync(pids_in_namespaces, names)
    if stray:
        kill_pids(stray)
    present = existing_namespaces(list(names))
    if present:
        try:
            batch = teardown_batch(present).encode()
            await run_checked(["ip", "-force", "-batch", "-"], stdin=batch)
        except LabError as exc:
            logger.warning("namespace deletion reported: %s", exc)
    return existing_namespaces(list(names))


async def _teardown(plan: LabPlan, processes: ProcessGroup) -> list[str]:
    """Stop the lab's processes and delete its namespaces; return any left behind."""
    start = trio.current_time()
    with trio.move_on_after(_TEARDOWN_TIMEOUT_S) as scope:
        await processes.aclose()
        await _delete_namespaces(plan.namespaces)
    if scope.cancelled_caught:
        logger.error("lab %s teardown timed out after %.0f s", plan.prefix, _TEARDOWN_TIMEOUT_S)
    remaining = existing_namespaces(plan.namespaces)
    if remaining:
        logger.error("lab %s left namespaces behind: %s", plan.prefix, remaining)
    logger.info("lab %s down in %.3f s", plan.prefix, trio.current_time() - start)
    return remaining


def _make_lab(plan: LabPlan, processes: ProcessGroup) -> Lab:
    sites = []
    for sp in plan.sites:
        routers = tuple(
            Router(r.netns.rsplit("-", 1)[1], r.netns, processes, r.wan_ip, r.lan_ip, r.layer)
            for r in sp.routers
        )
        hosts = tuple(
            Host(
                h.label,
                h.netns,
                processes,
                h.ip,
                h.public_ip,
                h.gateway,
                sp.index,
                sp.preset,
                h.ip6,
            )
            for h in sp.hosts
        )
        sites.append(Site(sp.index, sp.preset, routers, hosts))
    return Lab(
        prefix=plan.prefix,
        pub=Node("pub", plan.pub_netns, processes),
        server=Server("srv", plan.server_netns, processes, ips6=SERVER_IPS6 if plan.ipv6 else ()),
        sites=tuple(sites),
        impairment=plan.impairment if any(link.impaired for link in plan.links) else None,
    )


async def _choose_impairment(
    wanted: Literal["auto", "netem", "wire"], needed: bool
) -> Literal["netem", "wire"]:
    if not needed:
        return "netem" if wanted == "auto" else wanted
    netem = await trio.to_thread.run_sync(netem_available)
    if wanted == "auto":
        wanted = "netem" if netem else "wire"
    if wanted == "netem" and not netem:
        raise LabError("the kernel has no netem qdisc (CONFIG_NET_SCH_NETEM)")
    if wanted == "wire" and not tun_available():
        raise LabError("/dev/net/tun is missing: the userspace wire needs TAP devices")
    return wanted


async def remove_leftovers() -> list[str]:
    """Delete namespaces of this process's prefix that no live lab owns; return their names."""
    stale = await trio.to_thread.run_sync(leftover_namespaces)
    if not stale:
        return []
    logger.warning("removing leftover lab namespaces: %s", stale)
    remaining = await _delete_namespaces(stale)
    return [ns for ns in stale if ns not in remaining]


@asynccontextmanager
async def open_lab(
    sites: Sequence[NatPreset | SiteConfig] = (NatPreset.PORT_RESTRICTED_CONE,),
    *,
    delay_ms: float = 0.0,
    loss: float = 0.0,
    impairment: Literal["auto", "netem", "wire"] = "auto",
    process_grace_s: float = 1.0,
) -> AsyncIterator[Lab]:
    """Build a lab with one site per entry of ``sites``, yield it, and tear it all down.

    ``delay_ms`` (one way, in each direction) and ``loss`` (per packet and direction) impair
    every access link unless a :class:`SiteConfig` says otherwise; ``impairment`` picks kernel
    netem or the userspace wire (``auto``: netem when the kernel has it). Processes started in
    the lab get SIGTERM at teardown, SIGKILL ``process_grace_s`` later; then every namespace is
    deleted, also when the body raises or is cancelled. Raises :class:`LabError` when the lab
    cannot run here (see :func:`lab_available`), cannot be built, or (after a body that
    succeeded) could not be removed completely.
    """
    configs = [s if isinstance(s, SiteConfig) else SiteConfig(s) for s in sites]
    ok, reason = await trio.to_thread.run_sync(lab_available)
    if not ok:
        raise LabError(f"NAT lab unavailable: {reason}")
    needed = needs_impairment(configs, delay_ms=delay_ms, loss=loss)
    backend = await _choose_impairment(impairment, needed)
    await remove_leftovers()
    prefix = claim_prefix()
    processes = ProcessGroup(process_grace_s)
    plan = plan_lab(prefix, configs, delay_ms=delay_ms, loss=loss, impairment=backend)
    try:
        start = trio.current_time()
        await _build(plan, processes)
        logger.info(
            "lab %s up in %.3f s: %s",
            prefix,
            trio.current_time() - start,
            ", ".join(c.preset.value for c in configs),
        )
        yield _make_lab(plan, processes)
    finally:
        with trio.CancelScope(shield=True):
            remaining = await _teardown(plan, processes)
        release_prefix(prefix)
    if remaining:
        raise LabError(f"lab teardown left namespaces behind: {remaining}")
