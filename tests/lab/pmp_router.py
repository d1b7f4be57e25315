"""A NAT-PMP / PCP daemon for a lab router: ``python -m tests.lab.pmp_router WAN_IF WAN_IP LAN_IP
[--no-natpmp] [--no-pcp]``, run in the router's namespace.

The protocols are the library's own sans-IO server side (:class:`macula_nat.portmap.server.
PortMapServer`, what the simulated NAT serves); each mapping is an nftables DNAT rule in table
``ip lab_pmp`` (chain ``pre``, which the test creates): the kernel forwards the port, conntrack
sends the answers back out of it, the way miniupnpd does it. It prints a JSON line per change
(``mapped``, ``unmapped``, ``expired``) and deletes its rules when it stops.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import random
import re
import subprocess
import sys

import attrs
import trio

from macula_nat.net.address import Address
from macula_nat.portmap.natpmp import PORT
from macula_nat.portmap.server import PortMapServer

TABLE = "lab_pmp"
CHAIN = "pre"
_HANDLE = re.compile(rb"# handle (\d+)")


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def nft(*argv: str) -> bytes:
    return subprocess.run(["nft", *argv], capture_output=True, check=True).stdout


@attrs.define
class _Rule:
    port: int
    handle: int
    until: float


@attrs.define
class NftTable:
    """:class:`~macula_nat.portmap.server.PortMapTable` on nftables DNAT rules."""

    wan: str
    wan_ip: str
    rules: dict[Address, _Rule] = attrs.Factory(dict)

    def map_port(
        self, internal: Address, suggested_port: int, lifetime: float, now: float
    ) -> Address | None:
        self.expire(now)
        rule = self.rules.get(internal)
        if rule is None:
            taken = {r.port for r in self.rules.values()}
            port = suggested_port
            if not 1024 <= port <= 65535 or port in taken:
                port = random.choice([p for p in range(20000, 60000) if p not in taken])
            echo = nft(
                "--echo", "--handle", "add", "rule", "ip", TABLE, CHAIN,
                "iifname", self.wan, "udp", "dport", str(port),
                "dnat", "to", f"{internal[0]}:{internal[1]}",
            )  # fmt: skip
            found = _HANDLE.search(echo)
            if found is None:
                raise RuntimeError(f"nft gave no handle: {echo!r}")
            rule = _Rule(port, int(found[1]), now + lifetime)
            self.rules[internal] = rule
            emit("mapped", internal=list(internal), external=[self.wan_ip, port])
        rule.until = now + lifetime
        return self.wan_ip, rule.port

    def unmap_port(self, internal: Address, now: float) -> bool:
        self.expire(now)
        rule = self.rules.pop(internal, None)
        if rule is None:
            return False
        nft("delete", "rule", "ip", TABLE, CHAIN, "handle", str(rule.handle))
        emit("unmapped", internal=list(internal), external=[self.wan_ip, rule.port])
        return True

    def expire(self, now: float) -> None:
        for internal, rule in list(self.rules.items()):
            if now >= rule.until:
                del self.rules[internal]
                nft("delete", "rule", "ip", TABLE, CHAIN, "handle", str(rule.handle))
                emit("expired", internal=list(internal), external=[self.wan_ip, rule.port])


async def main(args: argparse.Namespace) -> None:
    table = NftTable(args.wan, args.wan_ip)
    server = PortMapServer(
        table, args.wan_ip, trio.current_time(), speaks_natpmp=args.natpmp, speaks_pcp=args.pcp
    )
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    with sock:
        await sock.bind((args.lan_ip, PORT))
        emit("ready", natpmp=args.natpmp, pcp=args.pcp)
        try:
            while True:
                data, source = await sock.recvfrom(2048)
                answer = server.handle(data, source, trio.current_time())
                if answer is not None:
                    await sock.sendto(answer, source)
        finally:
            for internal in list(table.rules):
                table.unmap_port(internal, trio.current_time())


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("wan")
    parser.add_argument("wan_ip")
    parser.add_argument("lan_ip")
    parser.add_argument("--no-natpmp", dest="natpmp", action="store_false")
    parser.add_argument("--no-pcp", dest="pcp", action="store_false")
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C, when run by hand
        trio.run(main, parser.parse_args())
