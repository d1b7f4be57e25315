"""PCP (RFC 6887) messages, sans-IO: the common header, the MAP and ANNOUNCE opcodes, options.

Every request carries a lifetime and the client's IP (IPv4 as IPv4-mapped IPv6, ``::ffff:a.b.c.d``);
every response a result code, a lifetime and the server's epoch. MAP (opcode 1) asks for an
inbound mapping of ``internal_port`` on the client's IP for a protocol (17: UDP); its 96-bit
nonce ties a renewal or a deletion (lifetime 0) to the mapping it made. ANNOUNCE (opcode 0) has
no body: a client sends it to learn whether a PCP server is there. Options (code, length, data
padded to four bytes) are kept as they are. The decoders raise only
:class:`~.errors.PortMapDecodeError`.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections.abc import Callable
from typing import Final

import attrs

from .errors import PortMapDecodeError

VERSION: Final = 2
MAX_MESSAGE: Final = 1100
"""RFC 6887 section 7: no PCP message is longer."""
OP_ANNOUNCE: Final = 0
OP_MAP: Final = 1
RESPONSE_BIT: Final = 0x80
PROTOCOL_UDP: Final = 17
PROTOCOL_TCP: Final = 6
NONCE_SIZE: Final = 12


class Result(enum.IntEnum):
    """RFC 6887 section 7.4 result codes."""

    SUCCESS = 0
    UNSUPP_VERSION = 1
    NOT_AUTHORIZED = 2
    MALFORMED_REQUEST = 3
    UNSUPP_OPCODE = 4
    UNSUPP_OPTION = 5
    MALFORMED_OPTION = 6
    NETWORK_FAILURE = 7
    NO_RESOURCES = 8
    UNSUPP_PROTOCOL = 9
    USER_EX_QUOTA = 10
    CANNOT_PROVIDE_EXTERNAL = 11
    ADDRESS_MISMATCH = 12
    EXCESSIVE_REMOTE_PEERS = 13


def result_name(code: int) -> str:
    """A result code as words, also for codes this module does not know."""
    try:
        return Result(code).name.lower()
    except ValueError:
        return f"unknown result {code}"


def pack_ip(ip: str) -> bytes:
    """16 bytes: an IPv6 address, or an IPv4 one IPv4-mapped."""
    address = ipaddress.ip_address(ip)
    if address.version == 4:
        return b"\x00" * 10 + b"\xff\xff" + address.packed
    return address.packed


def unpack_ip(data: bytes) -> str:
    """The text of a 16-byte PCP address: IPv4 when IPv4-mapped."""
    address = ipaddress.IPv6Address(data)
    mapped = address.ipv4_mapped
    return str(mapped) if mapped is not None else str(address)


def _canonical_ip(value: str) -> str:
    return unpack_ip(pack_ip(value))


def _bits(size: int) -> Callable[[object, attrs.Attribute[int], int], None]:
    def check(_: object, attribute: attrs.Attribute[int], value: int) -> None:
        if not 0 <= value < 1 << size:
            raise ValueError(f"{attribute.name} must fit {size} bits, not {value!r}")

    return check


@attrs.frozen
class Option:
    """One option: its code and its data (without the padding)."""

    code: int = attrs.field(validator=_bits(8))
    data: bytes = attrs.field(default=b"")

    @data.validator
    def _check_data(self, _: attrs.Attribute[bytes], value: bytes) -> None:
        if len(value) > 0xFFFF:
            raise ValueError(f"option data of {len(value)} bytes: at most 65535")


@attrs.frozen
class MapBody:
    """The MAP opcode's body, alike in request and response: in a request the external port
    and IP are suggestions (0 and ``::``/``0.0.0.0``: any), in a response what was assigned."""

    nonce: bytes = attrs.field()
    internal_port: int = attrs.field(validator=_bits(16))
    external_port: int = attrs.field(validator=_bits(16))
    external_ip: str = attrs.field(converter=_canonical_ip)
    protocol: int = attrs.field(default=PROTOCOL_UDP, validator=_bits(8))

    @nonce.validator
    def _check_nonce(self, _: attrs.Attribute[bytes], value: bytes) -> None:
        if len(value) != NONCE_SIZE:
            raise ValueError(f"a MAP nonce is {NONCE_SIZE} bytes, not {len(value)}")


@attrs.frozen
class Request:
    opcode: int = attrs.field(validator=_bits(7))
    lifetime: int = attrs.field(validator=_bits(32))
    client_ip: str = attrs.field(converter=_canonical_ip)
    map: MapBody | None = None
    """The MAP body (``opcode`` 1); None for ANNOUNCE and opcodes without one here."""
    options: tuple[Option, ...] = ()


@attrs.frozen
class Response:
    opcode: int = attrs.field(validator=_bits(7))
    result: int = attrs.field(validator=_bits(8))
    lifetime: int = attrs.field(validator=_bits(32))
    epoch: int = attrs.field(validator=_bits(32))
    map: MapBody | None = None
    options: tuple[Option, ...] = ()


_REQUEST_HEADER = struct.Struct("!BBHI16s")
_RESPONSE_HEADER = struct.Struct("!BBBBII12x")
_MAP_BODY = struct.Struct("!12sB3xHH16s")
_OPTION_HEADER = struct.Struct("!BxH")


def _encode_map(body: MapBody) -> bytes:
    return _MAP_BODY.pack(
        body.nonce, body.protocol, body.internal_port, body.external_port,
        pack_ip(body.external_ip),
    )  # fmt: skip


def _encode_options(options: tuple[Option, ...]) -> bytes:
    out = bytearray()
    for option in options:
        out += _OPTION_HEADER.pack(option.code, len(option.data))
        out += option.data + b"\x00" * (-len(option.data) % 4)
    return bytes(out)


def _check_size(message: bytes) -> bytes:
    if len(message) > MAX_MESSAGE:
        raise ValueError(f"a PCP message of {len(message)} bytes: at most {MAX_MESSAGE}")
    return message


def encode_request(request: Request) -> bytes:
    """The request's bytes; ValueError when it would exceed :data:`MAX_MESSAGE`."""
    header = _REQUEST_HEADER.pack(
        VERSION, request.opcode, 0, request.lifetime, pack_ip(request.client_ip)
    )
    body = _encode_map(request.map) if request.map is not None else b""
    return _check_size(header + body + _encode_options(request.options))


def encode_response(response: Response) -> bytes:
    """The response's bytes; ValueError when it would exceed :data:`MAX_MESSAGE`."""
    header = _RESPONSE_HEADER.pack(
        VERSION,
        RESPONSE_BIT | response.opcode,
        0,
        response.result,
        response.lifetime,
        response.epoch,
    )
    body = _encode_map(response.map) if response.map is not None else b""
    return _check_size(header + body + _encode_options(response.options))


def _decode_map(data: bytes, offset: int, what: str) -> MapBody:
    if len(data) < offset + _MAP_BODY.size:
        raise PortMapDecodeError(
            f"PCP MAP {what} of {len(data)} bytes: {offset + _MAP_BODY.size} needed"
        )
    nonce, protocol, internal, external, ip = _MAP_BODY.unpack_from(data, offset)
    return MapBody(nonce, internal, external, unpack_ip(ip), protocol)


def _decode_options(data: bytes, offset: int) -> tuple[Option, ...]:
    options: list[Option] = []
    while offset < len(data):
        if len(data) - offset < _OPTION_HEADER.size:
            raise PortMapDecodeError(f"PCP option header cut short at byte {offset}")
        code, length = _OPTION_HEADER.unpack_from(data, offset)
        offset += _OPTION_HEADER.size
        end = offset + length
        if end > len(data):
            raise PortMapDecodeError(
                f"PCP option {code} of {length} bytes runs past the message end"
            )
        options.append(Option(code, data[offset:end]))
        offset = end + (-length % 4)
    return tuple(options)


def _check_frame(data: bytes, what: str, minimum: int) -> None:
    if len(data) > MAX_MESSAGE:
        raise PortMapDecodeError(f"PCP {what} of {len(data)} bytes: at most {MAX_MESSAGE}")
    if len(data) < minimum:
        raise PortMapDecodeError(f"PCP {what} of {len(data)} bytes: at least {minimum} needed")
    if len(data) % 4:
        raise PortMapDecodeError(f"PCP {what} of {len(data)} bytes: not a multiple of 4")
    if data[0] != VERSION:
        raise PortMapDecodeError(f"PCP {what} of version {data[0]}, not {VERSION}")


def decode_request(data: bytes) -> Request:
    """A client's request (the server side, e.g. the simulated NAT)."""
    _check_frame(data, "request", _REQUEST_HEADER.size)
    _, opcode, _, lifetime, client = _REQUEST_HEADER.unpack_from(data)
    if opcode & RESPONSE_BIT:
        raise PortMapDecodeError("PCP request with the response bit set")
    offset = _REQUEST_HEADER.size
    body = None
    if opcode == OP_MAP:
        body = _decode_map(data, offset, "request")
        offset += _MAP_BODY.size
    options = _decode_options(data, offset)
    return Request(opcode, lifetime, unpack_ip(client), body, options)


def decode_response(data: bytes) -> Response:
    """A server's answer. A MAP answer that is not a success may come without its body (RFC
    6887 section 7.2: a server that cannot parse the request answers with the header)."""
    _check_frame(data, "response", _RESPONSE_HEADER.size)
    _, opcode, _, result, lifetime, epoch = _RESPONSE_HEADER.unpack_from(data)
    if not opcode & RESPONSE_BIT:
        raise PortMapDecodeError("PCP response without the response bit: a request")
    opcode &= ~RESPONSE_BIT
    offset = _RESPONSE_HEADER.size
    body = None
    if opcode == OP_MAP and (result == Result.SUCCESS or len(data) > offset):
        body = _decode_map(data, offset, "response")
        offset += _MAP_BODY.size
    options = _decode_options(data, offset)
    return Response(opcode, result, lifetime, epoch, body, options)
