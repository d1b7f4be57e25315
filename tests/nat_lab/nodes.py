"""Handles on the namespaces of a running lab: run commands and processes inside them."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence

import attrs
import trio

from tests.nat_lab.commands import (
    netns_argv,
    python_argv,
    python_env,
    run_checked,
)
from tests.nat_lab.nft import nat_flush_script
from tests.nat_lab.presets import NatPreset
from tests.nat_lab.processes import ProcessGroup
from tests.nat_lab.topology import SERVER_IPS, Impairment


@attrs.frozen(eq=False)
class Node:
    """One network namespace of the lab."""

    label: str
    netns: str
    processes: ProcessGroup = attrs.field(repr=False)

    async def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes = b"",
        check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``argv`` inside this namespace to completion, capturing stdout and stderr.

        Raises :class:`subprocess.CalledProcessError` on a nonzero exit when ``check``. Bound
        it with ``trio.fail_after``: on cancellation the process is terminated.
        """
        return await trio.run_process(
            netns_argv(self.netns, argv),
            stdin=stdin,
            capture_stdout=True,
            capture_stderr=True,
            check=check,
            env=None if env is None else dict(env),
        )

    async def run_python(
        self,
        args: Sequence[str],
        *,
        stdin: bytes = b"",
        check: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run this project's python with ``args`` (``["-m", mod, ...]``, ``["-c", src]`` or a
        script path) inside this namespace; ``macula_nat`` is importable there."""
        return await self.run(python_argv(args), stdin=stdin, check=check, env=python_env())

    async def start_process(
        self,
        argv: Sequence[str],
        *,
        stdin: int | None = subprocess.DEVNULL,
        stdout: int | None = None,
        stderr: int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> trio.Process:
        """Start a long-running ``argv`` inside this namespace; the lab stops it at teardown.

        Pass ``stdout=subprocess.PIPE`` to read its output from ``process.stdout``.
        """
        return await self.processes.start(
            netns_argv(self.netns, argv), stdin=stdin, stdout=stdout, stderr=stderr, env=env
        )

    async def start_python(
        self,
        args: Sequence[str],
        *,
        stdin: int | None = subprocess.DEVNULL,
        stdout: int | None = None,
        stderr: int | None = None,
    ) -> trio.Process:
        """:meth:`start_process` for this project's python with ``args``."""
        return await self.start_process(
            python_argv(args), stdin=stdin, stdout=stdout, stderr=stderr, env=python_env()
        )


@attrs.frozen(eq=False)
class Host(Node):
    """A host of a site: behind its router's NAT, or on the public segment for NONE."""

    ip: str
    public_ip: str
    gateway: str | None
    site_index: int
    preset: NatPreset
    ip6: str | None = None
    """Its IPv6 address (no NAT: the router's stateful firewall filters it), if any."""

    @property
    def behind_nat(self) -> bool:
        return self.gateway is not None


@attrs.frozen(eq=False)
class Router(Node):
    """A NAT router of a site, running ``preset``'s rules (one layer of a double NAT)."""

    wan_ip: str
    lan_ip: str
    preset: NatPreset

    async def reset_nat_state(self) -> None:
        """Forget every mapping: flush conntrack and the preset's learned maps."""
        script = "conntrack -F 2>/dev/null\n"
        flush = nat_flush_script(self.preset)
        if flush:
            script += f"nft -f - <<'LAB_EOF'\n{flush}LAB_EOF\n"
        await run_checked(netns_argv(self.netns, ["sh", "-ec", script]))


@attrs.frozen(eq=False)
class Server(Node):
    """The public server namespace, holding two addresses (for RFC 5780 style tests)."""

    ips: tuple[str, ...] = SERVER_IPS
    ips6: tuple[str, ...] = ()
    """Its IPv6 addresses, in a lab with IPv6 sites."""

    @property
    def primary_ip(self) -> str:
        return self.ips[0]

    @property
    def alternate_ip(self) -> str:
        return self.ips[1]


@attrs.frozen(eq=False)
class Site:
    """A NAT (or none) and the hosts behind it."""

    index: int
    preset: NatPreset
    routers: tuple[Router, ...]
    """Outermost first; none for NONE."""
    hosts: tuple[Host, ...]

    @property
    def router(self) -> Router | None:
        """The router on the public segment (whose WAN address peers see), if any."""
        return self.routers[0] if self.routers else None

    @property
    def host(self) -> Host:
        """The first host of the site."""
        return self.hosts[0]


@attrs.frozen(eq=False)
class Lab:
    """A running lab: the public segment, the server and the sites, in the order given."""

    prefix: str
    pub: Node
    server: Server
    sites: tuple[Site, ...]
    impairment: Impairment | None
    """How delay and loss are applied, or None when no link is impaired."""

    @property
    def hosts(self) -> tuple[Host, ...]:
        """Every host of every site, site by site."""
        return tuple(h for s in self.sites for h in s.hosts)

    @property
    def routers(self) -> tuple[Router, ...]:
        return tuple(r for s in self.sites for r in s.routers)

    @property
    def namespaces(self) -> tuple[str, ...]:
        names = [self.pub.netns, self.server.netns]
        for site in self.sites:
            names.extend(r.netns for r in site.routers)
            names.extend(h.netns for h in site.hosts)
        return tuple(names)

    async def reset_nat_state(self) -> None:
        """Forget every NAT mapping in every router (conntrack and learned maps)."""
        async with trio.open_nursery() as nursery:
            for router in self.routers:
                nursery.start_soon(router.reset_nat_state)
