"""NAT-PMP (RFC 6886) messages, sans-IO: encode and decode both directions.

A client asks the gateway (UDP port 5351) for its external IPv4 address (opcode 0) and to map a
UDP (1) or TCP (2) port; every answer carries the opcode plus 128, a result code and the
server's epoch (seconds since its mapping table was last reset: a value that goes backwards
means the router forgot its mappings). A mapping request with lifetime 0 deletes. The decoders
raise only :class:`~.errors.PortMapDecodeError`.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from typing import Final

import attrs

from .errors import PortMapDecodeError

PORT: Final = 5351
"""The gateway's NAT-PMP and PCP port."""
VERSION: Final = 0
RESPONSE_BIT: Final = 128

OP_EXTERNAL_ADDRESS: Final = 0
OP_MAP_UDP: Final = 1
OP_MAP_TCP: Final = 2


class Result(enum.IntEnum):
    """RFC 6886 section 3.5 result codes."""

    SUCCESS = 0
    UNSUPPORTED_VERSION = 1
    NOT_AUTHORIZED = 2
    NETWORK_FAILURE = 3
    OUT_OF_RESOURCES = 4
    UNSUPPORTED_OPCODE = 5


def result_name(code: int) -> str:
    """A result code as words, also for codes this module does not know."""
    try:
        return Result(code).name.lower()
    except ValueError:
        return f"unknown result {code}"


def _u16(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{attribute.name} must fit 16 bits, not {value!r}")


def _u32(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{attribute.name} must fit 32 bits, not {value!r}")


def _map_opcode(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value not in (OP_MAP_UDP, OP_MAP_TCP):
        raise ValueError(f"{attribute.name} must be 1 (UDP) or 2 (TCP), not {value!r}")


def _ipv4(value: str) -> str:
    return str(ipaddress.IPv4Address(value))


@attrs.frozen
class ExternalAddressRequest:
    """Opcode 0: what is the gateway's external IPv4 address?"""


@attrs.frozen
class MapRequest:
    """Opcode 1 or 2: map ``internal_port`` (of the sender's IP), ``external_port`` suggested
    (0: any), for ``lifetime`` seconds (0 with external port 0: delete)."""

    internal_port: int = attrs.field(validator=_u16)
    external_port: int = attrs.field(validator=_u16)
    lifetime: int = attrs.field(validator=_u32)
    opcode: int = attrs.field(default=OP_MAP_UDP, validator=_map_opcode)


@attrs.frozen
class ExternalAddressResponse:
    result: int = attrs.field(validator=_u16)
    epoch: int = attrs.field(validator=_u32)
    external_ip: str = attrs.field(converter=_ipv4)


@attrs.frozen
class MapResponse:
    result: int = attrs.field(validator=_u16)
    epoch: int = attrs.field(validator=_u32)
    internal_port: int = attrs.field(validator=_u16)
    external_port: int = attrs.field(validator=_u16)
    lifetime: int = attrs.field(validator=_u32)
    opcode: int = attrs.field(default=OP_MAP_UDP, validator=_map_opcode)


@attrs.frozen
class ErrorResponse:
    """An answer that carries only the header (RFC 6886 3.5: e.g. unsupported version or
    opcode, which a server sends without the opcode's body)."""

    opcode: int = attrs.field(validator=_u16)
    result: int = attrs.field(validator=_u16)
    epoch: int = attrs.field(validator=_u32)


Request = ExternalAddressRequest | MapRequest
Response = ExternalAddressResponse | MapResponse | ErrorResponse

_MAP = struct.Struct("!BBHHHI")
_MAP_RESPONSE = struct.Struct("!BBHIHHI")
_ADDRESS_RESPONSE = struct.Struct("!BBHI4s")
_HEADER = struct.Struct("!BBHI")


def encode_request(request: Request) -> bytes:
    if isinstance(request, ExternalAddressRequest):
        return bytes((VERSION, OP_EXTERNAL_ADDRESS))
    return _MAP.pack(
        VERSION,
        request.opcode,
        0,
        request.internal_port,
        request.external_port,
        request.lifetime,
    )


def decode_request(data: bytes) -> Request:
    """A client's request (the server side, e.g. the simulated NAT)."""
    if len(data) < 2:
        raise PortMapDecodeError(f"NAT-PMP request of {len(data)} bytes: at least 2 needed")
    version, opcode = data[0], data[1]
    if version != VERSION:
        raise PortMapDecodeError(f"NAT-PMP request of version {version}, not {VERSION}")
    if opcode == OP_EXTERNAL_ADDRESS:
        return ExternalAddressRequest()
    if opcode not in (OP_MAP_UDP, OP_MAP_TCP):
        raise PortMapDecodeError(f"NAT-PMP request with unknown opcode {opcode}")
    if len(data) < _MAP.size:
        raise PortMapDecodeError(
            f"NAT-PMP mapping request of {len(data)} bytes: {_MAP.size} needed"
        )
    _, _, _, internal, external, lifetime = _MAP.unpack_from(data)
    return MapRequest(internal, external, lifetime, opcode)


def encode_response(response: Response) -> bytes:
    if isinstance(response, ExternalAddressResponse):
        ip = ipaddress.IPv4Address(response.external_ip).packed
        return _ADDRESS_RESPONSE.pack(
            VERSION, RESPONSE_BIT | OP_EXTERNAL_ADDRESS, response.result, response.epoch, ip
        )
    if isinstance(response, MapResponse):
        return _MAP_RESPONSE.pack(
            VERSION,
            RESPONSE_BIT | response.opcode,
            response.result,
            response.epoch,
            response.internal_port,
            response.external_port,
            response.lifetime,
        )
    return _HEADER.pack(VERSION, response.opcode, response.result, response.epoch)


def decode_response(data: bytes) -> Response:
    """A gateway's answer. A non-success answer may come with the header only
    (:class:`ErrorResponse`); a success always has its opcode's whole body."""
    if len(data) < _HEADER.size:
        raise PortMapDecodeError(
            f"NAT-PMP answer of {len(data)} bytes: at least {_HEADER.size} needed"
        )
    version, opcode, result, epoch = _HEADER.unpack_from(data)
    if version != VERSION:
        raise PortMapDecodeError(f"NAT-PMP answer of version {version}, not {VERSION}")
    if not opcode & RESPONSE_BIT:
        raise PortMapDecodeError(f"NAT-PMP answer with opcode {opcode}: a request, not an answer")
    request_opcode = opcode & ~RESPONSE_BIT
    if request_opcode == OP_EXTERNAL_ADDRESS and len(data) >= _ADDRESS_RESPONSE.size:
        ip = _ADDRESS_RESPONSE.unpack_from(data)[4]
        return ExternalAddressResponse(result, epoch, str(ipaddress.IPv4Address(ip)))
    if request_opcode in (OP_MAP_UDP, OP_MAP_TCP) and len(data) >= _MAP_RESPONSE.size:
        _, _, _, _, internal, external, lifetime = _MAP_RESPONSE.unpack_from(data)
        return MapResponse(result, epoch, internal, external, lifetime, request_opcode)
    if result == Result.SUCCESS:
        raise PortMapDecodeError(
            f"NAT-PMP success for opcode {request_opcode} of {len(data)} bytes: "
            "too short or an unknown opcode"
        )
    return ErrorResponse(opcode, result, epoch)
