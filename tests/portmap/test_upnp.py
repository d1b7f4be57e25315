"""UPnP IGD: SSDP and description parsing, SOAP, XML limits, and the PortMapper against a
fake IGD on loopback (SSDP over UDP, HTTP over TCP: real sockets, 127.0.0.1 only)."""

from __future__ import annotations

import logging
import re
from functools import partial

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from macula_nat.actors import open_actor
from macula_nat.net import RealUdpStack
from macula_nat.portmap import upnp
from macula_nat.portmap.client import PortMapConfig, PortMapper, PortMapperServer, Protocol
from macula_nat.portmap.errors import PortMapDecodeError
from macula_nat.portmap.gateway import facing_address, parse_route_table

GATEWAY = "127.0.0.1"
WAN_IP = "203.0.113.40"

DESCRIPTION = """<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0">
 <device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType>
  <serviceList><service>
   <serviceType>urn:schemas-upnp-org:service:Layer3Forwarding:1</serviceType>
   <controlURL>/ctl/L3F</controlURL></service></serviceList>
  <deviceList><device><deviceList><device><serviceList><service>
   <serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType>
   <controlURL>/ctl/IPConn</controlURL>
  </service></serviceList></device></deviceList></device></deviceList>
 </device></root>"""


def ssdp_answer(location: str) -> bytes:
    return (
        "HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\n"
        f"ST: {upnp.IGD}\r\nLocation: {location}\r\nSERVER: miniupnpd/2.3\r\n\r\n"
    ).encode()


def soap_answer(action: str, **values: str) -> bytes:
    body = "".join(f"<{k}>{v}</{k}>" for k, v in values.items())
    return (
        '<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">'
        f'<s:Body><u:{action}Response xmlns:u="urn:x">{body}</u:{action}Response></s:Body>'
        "</s:Envelope>"
    ).encode()


def soap_fault(code: int) -> bytes:
    return (
        '<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">'
        "<s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring>"
        '<detail><UPnPError xmlns="urn:schemas-upnp-org:control-1-0">'
        f"<errorCode>{code}</errorCode><errorDescription>nope</errorDescription></UPnPError>"
        "</detail></s:Fault></s:Body></s:Envelope>"
    ).encode()


# -- sans-IO ---------------------------------------------------------------------------------------


def test_msearch_and_ssdp_answer() -> None:
    assert upnp.msearch().startswith(b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\n")
    answer = upnp.parse_ssdp(ssdp_answer("http://10.0.0.1:5000/rootDesc.xml"), "10.0.0.1")
    assert answer.location == "http://10.0.0.1:5000/rootDesc.xml"
    assert answer.search_target == upnp.IGD and answer.server == "miniupnpd/2.3"


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"HTTP/1.1 404 Not Found\r\n\r\n", "not 200 OK"),
        (b"HTTP/1.1 200 OK\r\nST: x\r\n\r\n", "without a LOCATION"),
        (ssdp_answer("http://10.9.9.9/x.xml"), "points away from the gateway"),
        (ssdp_answer("ftp://10.0.0.1/x.xml"), "not an http URL"),
        (ssdp_answer("http://10.0.0.1:99999/x"), "not a URL"),
        (b"HTTP/1.1 200 OK\r\nbroken\r\n\r\n", "without a name"),
        (b"\xff\xfe", "not ASCII"),
        (b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 400, "at most"),
    ],
)
def test_ssdp_malformed(data: bytes, words: str) -> None:
    with pytest.raises(PortMapDecodeError, match=words):
        upnp.parse_ssdp(data, "10.0.0.1")


def test_description_finds_the_wan_ip_connection() -> None:
    service = upnp.parse_description(DESCRIPTION.encode(), "http://10.0.0.1:5000/d.xml", "10.0.0.1")
    assert service == upnp.IgdService("http://10.0.0.1:5000/ctl/IPConn", upnp.SERVICES[1])


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b'<!DOCTYPE r [<!ENTITY a "aaaa">]><root>&a;</root>', "DTD"),
        (b"<!doctype html><root/>", "DTD"),
        (b"<root><unclosed></root>", "not well-formed"),
        (b"<root>" + b" " * upnp.MAX_XML + b"</root>", "at most"),
        (b"<root><service><serviceType>x</serviceType></service></root>", "no WANIPConnection"),
        (DESCRIPTION.replace("/ctl/IPConn", "http://192.0.2.1/ctl").encode(), "points away"),
    ],
)
def test_description_malformed(data: bytes, words: str) -> None:
    with pytest.raises(PortMapDecodeError, match=words):
        upnp.parse_description(data, "http://10.0.0.1:5000/d.xml", "10.0.0.1")


def test_soap_request_answer_and_fault() -> None:
    service = upnp.IgdService("http://10.0.0.1/ctl", upnp.SERVICES[1])
    body = upnp.soap_request(service, "AddPortMapping", {"NewInternalClient": "a<b"})
    assert b"<u:AddPortMapping xmlns:u=" in body and b"a&lt;b" in body
    assert upnp.soap_action(service, "X") == f'"{upnp.SERVICES[1]}#X"'
    reply = soap_answer("GetExternalIPAddress", NewExternalIPAddress=WAN_IP)
    assert upnp.parse_soap(reply, "GetExternalIPAddress") == {"NewExternalIPAddress": WAN_IP}
    with pytest.raises(upnp.SoapFault) as fault:
        upnp.parse_soap(soap_fault(718), "AddPortMapping")
    assert fault.value.code == upnp.CONFLICT
    with pytest.raises(PortMapDecodeError, match="neither"):
        upnp.parse_soap(soap_answer("Other"), "AddPortMapping")


@given(st.binary(max_size=300))
def test_fuzz_parsers_raise_only_decode_errors(data: bytes) -> None:
    for parse in (
        lambda d: upnp.parse_ssdp(d, "10.0.0.1"),
        lambda d: upnp.parse_description(d, "http://10.0.0.1/", "10.0.0.1"),
        lambda d: upnp.parse_soap(d, "AddPortMapping"),
    ):
        try:
            parse(data)
        except PortMapDecodeError as exc:
            assert str(exc)
        except upnp.SoapFault:
            pass


def test_route_table_and_facing_address() -> None:
    table = (
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
        "eth0\t00000000\t0102A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
        "eth1\t00000000\t010010AC\t0003\t0\t0\t50\t00000000\t0\t0\t0\n"
        "eth0\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
    )
    assert parse_route_table(table) == "172.16.0.1"
    assert parse_route_table("garbage\nnot a table") is None
    assert facing_address(["10.0.0.5", "192.168.2.7", "::1"], "192.168.2.1") == "192.168.2.7"
    assert facing_address(["::1"], "192.168.2.1") is None


# -- a fake IGD on loopback ------------------------------------------------------------------------


class FakeIgd:
    """SSDP on UDP, description and SOAP over HTTP: what miniupnpd answers, or worse."""

    def __init__(self) -> None:
        self.mappings: dict[int, tuple[str, int, int]] = {}
        self.taken = {40000}
        self.external_ip = WAN_IP
        self.description = DESCRIPTION.encode()
        self.http_port = 0
        self.ssdp_port = 0
        self.actions: list[str] = []

    async def serve_ssdp(self, task_status: trio.TaskStatus[None]) -> None:
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        with sock:
            await sock.bind((GATEWAY, 0))
            self.ssdp_port = sock.getsockname()[1]
            task_status.started()
            while True:
                data, source = await sock.recvfrom(2048)
                if data.startswith(b"M-SEARCH"):
                    location = f"http://{GATEWAY}:{self.http_port}/rootDesc.xml"
                    await sock.sendto(ssdp_answer(location), source)

    async def serve_http(self, stream: trio.SocketStream) -> None:
        data = b""
        with trio.move_on_after(5):
            while b"\r\n\r\n" not in data:
                data += await stream.receive_some(4096)
            head, _, body = data.partition(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length: *(\d+)", head)
            while length and len(body) < int(length[1]):
                body += await stream.receive_some(4096)
            status, answer = self.answer(head, body)
            await stream.send_all(
                b"HTTP/1.1 %d X\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                % (status, len(answer), answer)
            )
        await stream.aclose()

    def answer(self, head: bytes, body: bytes) -> tuple[int, bytes]:
        if head.startswith(b"GET /rootDesc.xml"):
            return 200, self.description
        action = re.search(rb"#(\w+)", head)
        name = action[1].decode() if action else ""
        self.actions.append(name)
        fields = dict(re.findall(rb"<(New\w+)>([^<]*)<", body))
        if name == "GetExternalIPAddress":
            return 200, soap_answer(name, NewExternalIPAddress=self.external_ip)
        if name == "AddPortMapping":
            port = int(fields[b"NewExternalPort"])
            if port in self.taken:
                return 500, soap_fault(upnp.CONFLICT)
            client = fields[b"NewInternalClient"].decode()
            internal = int(fields[b"NewInternalPort"])
            self.mappings[port] = (client, internal, int(fields[b"NewLeaseDuration"]))
            return 200, soap_answer(name)
        if name == "DeletePortMapping":
            self.mappings.pop(int(fields[b"NewExternalPort"]), None)
            return 200, soap_answer(name)
        return 500, soap_fault(401)


async def run_igd(nursery: trio.Nursery, igd: FakeIgd) -> None:
    listeners = await nursery.start(partial(trio.serve_tcp, igd.serve_http, 0, host=GATEWAY))
    igd.http_port = listeners[0].socket.getsockname()[1]
    await nursery.start(igd.serve_ssdp)


def config(igd: FakeIgd) -> PortMapConfig:
    return PortMapConfig(
        gateway=GATEWAY, local_ip=GATEWAY, protocols=(Protocol.UPNP,), ssdp_port=igd.ssdp_port,
        http_timeout=5, retry_interval=30,
    )  # fmt: skip


async def test_maps_over_upnp_and_deletes_on_stop() -> None:
    igd = FakeIgd()
    async with trio.open_nursery() as nursery:
        await run_igd(nursery, igd)
        mapper = PortMapper(RealUdpStack(), 40000, config(igd))
        async with open_actor(PortMapperServer(mapper)):
            with trio.fail_after(10):
                mapping = await mapper.mapping.wait_value(lambda m: m is not None)
            assert mapping is not None and mapping.protocol is Protocol.UPNP
            # 40000 was taken (718 ConflictInMappingEntry): another port was mapped
            assert mapping.external[0] == WAN_IP and mapping.external[1] != 40000
            assert igd.mappings == {mapping.external[1]: (GATEWAY, 40000, 7200)}
        assert igd.mappings == {} and "DeletePortMapping" in igd.actions
        assert mapper.statistics().deleted == 1
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("spoil", "words"),
    [
        ({"description": b'<!DOCTYPE x [<!ENTITY e "e">]><root/>'}, "declares a DTD"),
        ({"description": b"<root><open></root>"}, "not well-formed"),
        ({"external_ip": "not-an-ip"}, "malformed UPnP answer"),
    ],
)
async def test_malformed_igd_is_logged_not_mapped(
    caplog: pytest.LogCaptureFixture, spoil: dict[str, object], words: str
) -> None:
    igd = FakeIgd()
    for name, value in spoil.items():
        setattr(igd, name, value)
    async with trio.open_nursery() as nursery:
        await run_igd(nursery, igd)
        mapper = PortMapper(RealUdpStack(), 40000, config(igd))
        with caplog.at_level(logging.WARNING, "macula_nat.portmap.client"):
            async with open_actor(PortMapperServer(mapper)):
                with trio.move_on_after(1):
                    await mapper.mapping.wait_value(lambda m: m is not None)
        assert mapper.mapping.value is None and igd.mappings == {}
        assert words in caplog.text and mapper.statistics().malformed >= 1
        nursery.cancel_scope.cancel()


async def test_an_igd_without_a_usable_external_address_is_refused_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """miniupnpd on a private or reserved WAN address answers GetExternalIPAddress empty:
    a clear line, not a malformed answer, and no mapping."""
    igd = FakeIgd()
    igd.external_ip = ""
    async with trio.open_nursery() as nursery:
        await run_igd(nursery, igd)
        mapper = PortMapper(RealUdpStack(), 40000, config(igd))
        with caplog.at_level(logging.INFO, "macula_nat.portmap.client"):
            async with open_actor(PortMapperServer(mapper)):
                with trio.move_on_after(1):
                    await mapper.mapping.wait_value(lambda m: m is not None)
        assert mapper.mapping.value is None and igd.mappings == {}
        assert "no usable external address" in caplog.text
        assert mapper.statistics().malformed == 0
        nursery.cancel_scope.cancel()


async def test_a_socket_that_cannot_be_bound_is_logged_not_a_crash(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An address this host does not own (192.0.2.1): every bind fails; the mapper logs it,
    keeps its actor alive and tries again later. No datagram leaves."""
    config = PortMapConfig(gateway=GATEWAY, local_ip="192.0.2.1", retry_interval=0.2)
    mapper = PortMapper(RealUdpStack(), 40000, config)
    with caplog.at_level(logging.INFO, "macula_nat.portmap.client"):
        async with open_actor(PortMapperServer(mapper)) as ref:
            await trio.sleep(0.5)
            assert ref.alive
    assert mapper.mapping.value is None and mapper.statistics().probes >= 2
    assert "probe failed" in caplog.text
