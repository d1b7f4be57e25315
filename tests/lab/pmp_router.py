"""A NAT-PMP / PCP (and UPnP IGD) daemon for a lab router: ``python -m tests.lab.pmp_router WAN_IF
WAN_IP LAN_IP [--no-natpmp] [--no-pcp] [--upnp]``, run in the router's namespace.

The protocols are the library's own sans-IO server side (:class:`macula_nat.portmap.server.
PortMapServer`, what the simulated NAT serves); each mapping is an nftables DNAT rule in table
``ip lab_pmp`` (chain ``pre``, which the test creates): the kernel forwards the port, conntrack
sends the answers back out of it, the way miniupnpd does it. With ``--upnp`` a minimal IGD
(SSDP on 1900, description and SOAP on HTTP 5555) maps through the same table. It prints a
JSON line per change (``mapped``, ``unmapped``, ``expired``) and deletes its rules when it
stops.
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
from functools import partial

import attrs
import trio

from macula_nat.net.address import Address
from macula_nat.portmap import upnp
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


# -- UPnP IGD (SSDP, description, SOAP): a minimal device on the same table --------------------

HTTP_PORT = 5555
SERVICE = "urn:schemas-upnp-org:service:WANIPConnection:1"
DESCRIPTION = f"""<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0"><device>
<deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType>
<deviceList><device><deviceList><device><serviceList><service>
<serviceType>{SERVICE}</serviceType><controlURL>/ctl/IPConn</controlURL>
</service></serviceList></device></deviceList></device></deviceList>
</device></root>""".encode()


def soap(action: str, body: str = "") -> bytes:
    return (
        '<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">'
        f'<s:Body><u:{action}Response xmlns:u="{SERVICE}">{body}</u:{action}Response>'
        "</s:Body></s:Envelope>"
    ).encode()


def fault(code: int) -> bytes:
    return (
        '<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">'
        "<s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring>"
        '<detail><UPnPError xmlns="urn:schemas-upnp-org:control-1-0">'
        f"<errorCode>{code}</errorCode><errorDescription>refused</errorDescription>"
        "</UPnPError></detail></s:Fault></s:Body></s:Envelope>"
    ).encode()


@attrs.define
class Igd:
    table: NftTable
    lan_ip: str

    async def serve_ssdp(self) -> None:
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        with sock:
            await sock.bind((self.lan_ip, upnp.SSDP_PORT))
            while True:
                data, source = await sock.recvfrom(2048)
                if data.startswith(b"M-SEARCH") and upnp.IGD.encode() in data:
                    await sock.sendto(
                        b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\n"
                        b"ST: " + upnp.IGD.encode() + b"\r\n"
                        b"LOCATION: http://%s:%d/rootDesc.xml\r\n\r\n"
                        % (self.lan_ip.encode(), HTTP_PORT),
                        source,
                    )

    async def serve_http(self, stream: trio.SocketStream) -> None:
        client = stream.socket.getpeername()[0]
        data = b""
        with trio.move_on_after(5):
            while b"\r\n\r\n" not in data and len(data) < 65536:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    break
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length: *(\d+)", head)
            while length and len(body) < int(length[1]):
                body += await stream.receive_some(4096)
            status, answer = self.answer(head, body, client)
            await stream.send_all(
                b"HTTP/1.1 %d X\r\nContent-Type: text/xml\r\nContent-Length: %d\r\n"
                b"Connection: close\r\n\r\n%s" % (status, len(answer), answer)
            )
        await stream.aclose()

    def answer(self, head: bytes, body: bytes, client: str) -> tuple[int, bytes]:
        if head.startswith(b"GET /rootDesc.xml"):
            return 200, DESCRIPTION
        action = re.search(rb"(?i)soapaction: *\"?[^#]*#(\w+)", head)
        name = action[1].decode() if action else ""
        fields = {k.decode(): v.decode() for k, v in re.findall(rb"<(New\w+)>([^<]*)<", body)}
        now = trio.current_time()
        if name == "GetExternalIPAddress":
            return 200, soap(
                name, f"<NewExternalIPAddress>{self.table.wan_ip}</NewExternalIPAddress>"
            )
        if name == "AddPortMapping":
            internal = (fields["NewInternalClient"], int(fields["NewInternalPort"]))
            port = int(fields["NewExternalPort"])
            if internal[0] != client:
                return 500, fault(606)  # secure mode: only for the asking host
            owner = next((i for i, r in self.table.rules.items() if r.port == port), None)
            if owner not in (None, internal):
                return 500, fault(upnp.CONFLICT)
            lease = int(fields.get("NewLeaseDuration", "0")) or 3600
            if self.table.map_port(internal, port, lease, now) != (self.table.wan_ip, port):
                self.table.unmap_port(internal, now)
                return 500, fault(upnp.CONFLICT)
            return 200, soap(name)
        if name == "DeletePortMapping":
            port = int(fields["NewExternalPort"])
            owner = next((i for i, r in self.table.rules.items() if r.port == port), None)
            if owner is None:
                return 500, fault(714)  # NoSuchEntryInArray
            self.table.unmap_port(owner, now)
            return 200, soap(name)
        return 500, fault(401)


async def main(args: argparse.Namespace) -> None:
    table = NftTable(args.wan, args.wan_ip)
    server = PortMapServer(
        table, args.wan_ip, trio.current_time(), speaks_natpmp=args.natpmp, speaks_pcp=args.pcp
    )
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    with sock:
        await sock.bind((args.lan_ip, PORT))
        try:
            async with trio.open_nursery() as nursery:
                if args.upnp:
                    igd = Igd(table, args.lan_ip)
                    nursery.start_soon(igd.serve_ssdp)
                    serve = partial(trio.serve_tcp, igd.serve_http, HTTP_PORT, host=args.lan_ip)
                    await nursery.start(serve)
                emit("ready", natpmp=args.natpmp, pcp=args.pcp, upnp=args.upnp)
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
    parser.add_argument("--upnp", action="store_true", help="also a UPnP IGD (SSDP, HTTP 5555)")
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C, when run by hand
        trio.run(main, parser.parse_args())
