"""Classic STUN (RFC 3489) Binding requests and responses, sans-IO.

RFC 3489 predates the magic cookie: its transaction id is the header's last 16 bytes, addresses
are never XORed, and a server names the socket it answers from (SOURCE-ADDRESS) and its other
IP and port (CHANGED-ADDRESS), which is how legacy NAT-type clients (Debian's ``stun``, old
STUNTMAN and JSTUN builds) run their tests. An observer answers them beside RFC 8489 requests;
:mod:`macula_nat.nat.binding` decides what to answer, this module only reads and writes bytes.

IPv4 only: RFC 3489's address family is IPv4 (an IPv6 source gets no classic answer).
"""

from __future__ import annotations

import socket
import struct
from typing import Final

import attrs

from macula_nat.net.address import Address

__all__ = [
    "CHANGE_REQUEST",
    "RESPONSE_ADDRESS",
    "ClassicRequest",
    "classic_binding_response",
    "classic_error_response",
    "parse_classic_request",
]

_HEADER: Final = 20
_BINDING_REQUEST: Final = 0x0001
_BINDING_RESPONSE: Final = 0x0101
_BINDING_ERROR: Final = 0x0111
_COOKIE: Final = (0x2112A442).to_bytes(4, "big")
MAPPED_ADDRESS: Final = 0x0001
RESPONSE_ADDRESS: Final = 0x0002
CHANGE_REQUEST: Final = 0x0003
SOURCE_ADDRESS: Final = 0x0004
CHANGED_ADDRESS: Final = 0x0005
ERROR_CODE: Final = 0x0009
UNKNOWN_ATTRIBUTES: Final = 0x000A
_CHANGE_IP: Final = 0x04
_CHANGE_PORT: Final = 0x02
_MANDATORY_BELOW: Final = 0x8000
"""RFC 3489 section 11.1: attribute types up to 0x7fff must be understood."""


@attrs.frozen
class ClassicRequest:
    """An RFC 3489 Binding request: its 16-byte transaction id and what it asks of the server."""

    transaction_id: bytes
    change_ip: bool = False
    change_port: bool = False
    response_address: bool = False
    """It carries RESPONSE-ADDRESS (answers sent elsewhere: a reflection tool; refused)."""
    unknown: tuple[int, ...] = ()
    """Mandatory attribute types this module does not know (USERNAME, MESSAGE-INTEGRITY, ...)."""


def parse_classic_request(data: bytes) -> ClassicRequest | None:
    """``data`` as an RFC 3489 Binding request, or None when it is not one (an RFC 8489 message
    with the magic cookie, another message type, or malformed framing)."""
    if len(data) < _HEADER or data[4:8] == _COOKIE:
        return None
    kind, length = struct.unpack_from("!HH", data)
    if kind != _BINDING_REQUEST or length != len(data) - _HEADER or length % 4:
        return None
    change_ip = change_port = response_address = False
    unknown: list[int] = []
    offset = _HEADER
    while offset < len(data):
        if offset + 4 > len(data):
            return None
        attribute, size = struct.unpack_from("!HH", data, offset)
        end = offset + 4 + size
        if end > len(data) or size % 4:
            return None  # RFC 3489 attributes are whole words
        if attribute == CHANGE_REQUEST:
            if size != 4:
                return None
            flags = int.from_bytes(data[offset + 4 : end], "big")
            change_ip, change_port = bool(flags & _CHANGE_IP), bool(flags & _CHANGE_PORT)
        elif attribute == RESPONSE_ADDRESS:
            response_address = True
        elif attribute < _MANDATORY_BELOW:
            unknown.append(attribute)
        offset = end
    return ClassicRequest(data[4:20], change_ip, change_port, response_address, tuple(unknown))


def classic_binding_response(
    transaction_id: bytes,
    mapped: Address,
    source: Address | None,
    changed: Address | None,
) -> bytes:
    """A Binding response: MAPPED-ADDRESS, then SOURCE-ADDRESS and CHANGED-ADDRESS when given."""
    attributes = _address(MAPPED_ADDRESS, mapped)
    if source is not None:
        attributes += _address(SOURCE_ADDRESS, source)
    if changed is not None:
        attributes += _address(CHANGED_ADDRESS, changed)
    return _message(_BINDING_RESPONSE, transaction_id, attributes)


def classic_error_response(
    transaction_id: bytes, code: int, reason: str, unknown: tuple[int, ...] = ()
) -> bytes:
    """A Binding error response (RFC 3489 section 11.2.9), with UNKNOWN-ATTRIBUTES for 420."""
    text = reason.encode("utf-8")
    text += b" " * (-len(text) % 4)
    value = struct.pack("!HBB", 0, code // 100, code % 100) + text
    attributes = struct.pack("!HH", ERROR_CODE, len(value)) + value
    if unknown:
        listed = list(unknown) + ([unknown[-1]] if len(unknown) % 2 else [])  # whole words
        packed = struct.pack(f"!{len(listed)}H", *listed)
        attributes += struct.pack("!HH", UNKNOWN_ATTRIBUTES, len(packed)) + packed
    return _message(_BINDING_ERROR, transaction_id, attributes)


def _address(kind: int, address: Address) -> bytes:
    ip, port = address
    return struct.pack("!HHBBH", kind, 8, 0, 1, port) + socket.inet_aton(ip)


def _message(kind: int, transaction_id: bytes, attributes: bytes) -> bytes:
    return struct.pack("!HH", kind, len(attributes)) + transaction_id + attributes
