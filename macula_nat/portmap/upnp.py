"""UPnP IGD, sans-IO: SSDP discovery, the device description, and SOAP actions.

A client multicasts (or sends the gateway) an SSDP ``M-SEARCH`` for an Internet Gateway Device;
the answer's ``LOCATION`` is the URL of its device description (XML), in which the
``WANIPConnection`` (or ``WANPPPConnection``) service names the control URL that SOAP actions
(``GetExternalIPAddress``, ``AddPortMapping``, ``DeletePortMapping``) are posted to.

XML from the LAN is untrusted: documents are capped in size and any DTD is refused before the
parser sees them, so no entity is ever declared, let alone expanded (what defusedxml's
``forbid_dtd`` does); the stdlib parser never fetches external resources. Everything here
raises :class:`~.errors.PortMapDecodeError` on malformed input; a SOAP fault the device sends
on purpose is a :class:`SoapFault`.
"""

from __future__ import annotations

import re
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Final
from xml.sax.saxutils import escape

import attrs

from .errors import PortMapDecodeError

SSDP_ADDRESS: Final = ("239.255.255.250", 1900)
SSDP_PORT: Final = 1900
IGD: Final = "urn:schemas-upnp-org:device:InternetGatewayDevice:1"
SERVICES: Final = (
    "urn:schemas-upnp-org:service:WANIPConnection:2",
    "urn:schemas-upnp-org:service:WANIPConnection:1",
    "urn:schemas-upnp-org:service:WANPPPConnection:1",
)
"""The services that map ports, in order of preference."""
MAX_SSDP: Final = 2048
MAX_XML: Final = 64 * 1024
"""Device descriptions of real routers are a few KiB; SOAP answers far less."""

_SOAP_ENVELOPE = "http://schemas.xmlsoap.org/soap/envelope/"
_CONTROL_NS = "urn:schemas-upnp-org:control-1-0"
_DTD = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


def msearch(target: str = IGD, *, wait: int = 1) -> bytes:
    """An SSDP search for ``target`` that asks for answers within ``wait`` seconds."""
    return (
        "M-SEARCH * HTTP/1.1\r\n"
        f"HOST: {SSDP_ADDRESS[0]}:{SSDP_ADDRESS[1]}\r\n"
        'MAN: "ssdp:discover"\r\n'
        f"MX: {wait}\r\n"
        f"ST: {target}\r\n"
        "\r\n"
    ).encode()


@attrs.frozen
class SsdpAnswer:
    """An SSDP answer: where the description is, and what answered."""

    location: str
    search_target: str
    server: str = ""


def _headers(lines: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise PortMapDecodeError(f"SSDP header line without a name: {line[:60]!r}")
        headers[name.strip().lower()] = value.strip()
    return headers


def parse_ssdp(data: bytes, source_ip: str) -> SsdpAnswer:
    """An answer to :func:`msearch` from ``source_ip``. Its ``LOCATION`` must be an ``http``
    URL on ``source_ip`` itself: a description elsewhere would let any host on the LAN point
    the client at a third party."""
    if len(data) > MAX_SSDP:
        raise PortMapDecodeError(f"SSDP answer of {len(data)} bytes: at most {MAX_SSDP}")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise PortMapDecodeError("SSDP answer is not ASCII text") from None
    lines = text.split("\r\n")
    status = lines[0].split(" ", 2)
    if len(status) < 2 or not status[0].startswith("HTTP/1.") or status[1] != "200":
        raise PortMapDecodeError(f"SSDP answer's status line is {lines[0][:60]!r}, not 200 OK")
    headers = _headers(lines[1:])
    location = headers.get("location")
    if not location:
        raise PortMapDecodeError("SSDP answer without a LOCATION header")
    check_url(location, source_ip, "LOCATION")
    return SsdpAnswer(location, headers.get("st", ""), headers.get("server", ""))


def check_url(url: str, host: str, what: str) -> tuple[str, int, str]:
    """``(host, port, path)`` of an ``http`` URL that must point at ``host``."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port or 80
    except ValueError as exc:
        raise PortMapDecodeError(f"{what} {url[:80]!r} is not a URL: {exc}") from None
    if parts.scheme != "http" or not parts.hostname:
        raise PortMapDecodeError(f"{what} {url[:80]!r} is not an http URL")
    if parts.hostname != host:
        raise PortMapDecodeError(f"{what} {url[:80]!r} points away from the gateway {host}")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.hostname, port, path


def parse_xml(data: bytes, what: str) -> ET.Element:
    """Parse untrusted XML: at most :data:`MAX_XML` bytes, no DTD (so no entities)."""
    if len(data) > MAX_XML:
        raise PortMapDecodeError(f"{what} of {len(data)} bytes: at most {MAX_XML}")
    if _DTD.search(data):
        raise PortMapDecodeError(f"{what} declares a DTD or entities: refused")
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        raise PortMapDecodeError(f"{what} is not well-formed XML: {exc}") from None


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _child_text(element: ET.Element, name: str) -> str:
    for child in element:
        if _local(child.tag) == name:
            return (child.text or "").strip()
    return ""


@attrs.frozen
class IgdService:
    """A port-mapping service of a gateway: where to post SOAP actions, and its type."""

    control_url: str
    service_type: str


def parse_description(data: bytes, location: str, gateway_ip: str) -> IgdService:
    """The preferred port-mapping service in a device description fetched from ``location``;
    its control URL, resolved against ``URLBase`` or ``location``, must stay on the gateway."""
    root = parse_xml(data, "device description")
    base = location
    found: dict[str, str] = {}
    for element in root.iter():
        name = _local(element.tag)
        if name == "URLBase" and element.text and element.text.strip():
            base = element.text.strip()
        elif name == "service":
            service_type = _child_text(element, "serviceType")
            control = _child_text(element, "controlURL")
            if service_type in SERVICES and control and service_type not in found:
                found[service_type] = control
    for service_type in SERVICES:
        if service_type in found:
            url = urllib.parse.urljoin(base, found[service_type])
            check_url(url, gateway_ip, "control URL")
            return IgdService(url, service_type)
    raise PortMapDecodeError("the device description has no WANIPConnection or WANPPPConnection")


def soap_request(service: IgdService, action: str, arguments: Mapping[str, str | int]) -> bytes:
    """The SOAP envelope of ``action`` (arguments in order); post it with :func:`soap_action`."""
    args = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in arguments.items())
    return (
        '<?xml version="1.0"?>\r\n'
        f'<s:Envelope xmlns:s="{_SOAP_ENVELOPE}" '
        's:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">'
        f'<s:Body><u:{action} xmlns:u="{service.service_type}">{args}</u:{action}></s:Body>'
        "</s:Envelope>"
    ).encode()


def soap_action(service: IgdService, action: str) -> str:
    """The ``SOAPACTION`` header's value."""
    return f'"{service.service_type}#{action}"'


class SoapFault(Exception):
    """The device refused an action (a UPnP error code: 718 conflict, 725 only permanent
    leases, 501 action failed, ...)."""

    def __init__(self, code: int, description: str) -> None:
        super().__init__(f"UPnP error {code}: {description}")
        self.code = code
        self.description = description


CONFLICT: Final = 718
ONLY_PERMANENT_LEASES: Final = 725


def parse_soap(data: bytes, action: str) -> dict[str, str]:
    """The output arguments of ``action``'s response; :class:`SoapFault` for a fault."""
    root = parse_xml(data, f"{action} answer")
    body = next((e for e in root if _local(e.tag) == "Body"), None)
    if _local(root.tag) != "Envelope" or body is None:
        raise PortMapDecodeError(f"{action} answer is not a SOAP envelope with a Body")
    for element in body:
        name = _local(element.tag)
        if name == f"{action}Response":
            return {_local(child.tag): (child.text or "").strip() for child in element}
        if name == "Fault":
            error = next((e for e in element.iter() if _local(e.tag) == "UPnPError"), None)
            if error is None:
                raise SoapFault(0, _child_text(element, "faultstring") or "fault without detail")
            code = _child_text(error, "errorCode")
            if not code.isdigit():
                raise PortMapDecodeError(f"{action} fault with error code {code[:20]!r}")
            raise SoapFault(int(code), _child_text(error, "errorDescription"))
    raise PortMapDecodeError(f"{action} answer has neither {action}Response nor a Fault")
