"""Sans-IO STUN codec: RFC 8489 messages with the RFC 5780 NAT behaviour discovery attributes.

A `Message` is a frozen value with one typed field per attribute this codec understands; every
other attribute travels untouched in `Message.raw_attributes`. `Message.encode` and `decode`
convert to and from bytes, so ``decode(message.encode()) == message`` for every valid message.
`decode` raises only `StunParseError`, whatever the input. MESSAGE-INTEGRITY is carried opaque:
this codec neither computes nor checks it.
"""

from __future__ import annotations

import enum
import ipaddress
import secrets
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final

import attrs

__all__ = [
    "BINDING",
    "MAGIC_COOKIE",
    "Address",
    "AttributeType",
    "ChangeRequest",
    "ErrorCode",
    "Message",
    "MessageClass",
    "RawAttribute",
    "StunParseError",
    "binding_request",
    "binding_success",
    "decode",
    "error_response",
    "is_stun",
    "new_transaction_id",
    "unknown_attributes_response",
]

Address = tuple[str, int]
"""An ``(ip, port)`` pair; the address family follows from the ip."""

MAGIC_COOKIE: Final = 0x2112A442
BINDING: Final = 0x001
HEADER_SIZE: Final = 20
MAX_BODY_SIZE: Final = 0xFFFC
"""Largest attribute section: the 16-bit length field, rounded down to a multiple of 4."""
MAX_VALUE_SIZE: Final = MAX_BODY_SIZE - 4
MAX_TEXT_SIZE: Final = 763
"""Bytes allowed in a reason phrase or SOFTWARE value (RFC 8489 sections 14.8 and 14.14)."""

_COOKIE_BYTES: Final = MAGIC_COOKIE.to_bytes(4, "big")
_FINGERPRINT_XOR: Final = 0x5354554E
_FAMILY_IPV4: Final = 0x01
_FAMILY_IPV6: Final = 0x02
_CHANGE_IP: Final = 0x04
_CHANGE_PORT: Final = 0x02


class StunParseError(ValueError):
    """Bytes that are not a well-formed STUN message."""


class MessageClass(enum.IntEnum):
    """The two class bits of the message type."""

    REQUEST = 0b00
    INDICATION = 0b01
    SUCCESS = 0b10
    ERROR = 0b11


class AttributeType(enum.IntEnum):
    """Attribute types this codec types or knowingly carries opaque."""

    MAPPED_ADDRESS = 0x0001
    CHANGE_REQUEST = 0x0003
    USERNAME = 0x0006
    MESSAGE_INTEGRITY = 0x0008
    ERROR_CODE = 0x0009
    UNKNOWN_ATTRIBUTES = 0x000A
    REALM = 0x0014
    NONCE = 0x0015
    MESSAGE_INTEGRITY_SHA256 = 0x001C
    PASSWORD_ALGORITHM = 0x001D
    USERHASH = 0x001E
    XOR_MAPPED_ADDRESS = 0x0020
    PADDING = 0x0026
    RESPONSE_PORT = 0x0027
    PASSWORD_ALGORITHMS = 0x8002
    ALTERNATE_DOMAIN = 0x8003
    SOFTWARE = 0x8022
    ALTERNATE_SERVER = 0x8023
    FINGERPRINT = 0x8028
    RESPONSE_ORIGIN = 0x802B
    OTHER_ADDRESS = 0x802C


_INTEGRITY_ORDER: Final[dict[int, int]] = {
    AttributeType.MESSAGE_INTEGRITY: 1,
    AttributeType.MESSAGE_INTEGRITY_SHA256: 2,
}

_REASONS: Final = {
    300: "Try Alternate",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    420: "Unknown Attribute",
    438: "Stale Nonce",
    500: "Server Error",
}
"""RFC 8489 and RFC 5780 default reason phrases."""


def _port(value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"port must be an int, got {value!r}")
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"port {value} is outside 0..65535")
    return value


def _optional_port(value: int | None) -> int | None:
    return None if value is None else _port(value)


def _address(value: Address) -> Address:
    if not isinstance(value, tuple) or len(value) != 2:
        raise TypeError(f"address must be an (ip, port) tuple, got {value!r}")
    ip, port = value
    if not isinstance(ip, str):
        raise TypeError(f"ip must be a str, got {ip!r}")
    try:
        parsed = ipaddress.ip_address(ip)
    except ValueError:
        raise ValueError(f"{ip!r} is not an IPv4 or IPv6 address") from None
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.scope_id is not None:
        raise ValueError(f"{ip!r} has a scope id, which STUN cannot carry")
    return (str(parsed), _port(port))


def _optional_address(value: Address | None) -> Address | None:
    return None if value is None else _address(value)


def _check_text(what: str, value: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {value!r}")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError(f"{what} {value!r} is not encodable as UTF-8") from None
    if size > MAX_TEXT_SIZE:
        raise ValueError(f"{what} is {size} bytes of UTF-8, at most {MAX_TEXT_SIZE}")
    return value


def _reason(value: str) -> str:
    return _check_text("reason phrase", value)


def _software(value: str | None) -> str | None:
    return None if value is None else _check_text("SOFTWARE", value)


def _check_blob(what: str, value: bytes) -> bytes:
    value = bytes(value)
    if len(value) > MAX_VALUE_SIZE:
        raise ValueError(f"{what} is {len(value)} bytes, at most {MAX_VALUE_SIZE} fit")
    return value


def _attribute_value(value: bytes) -> bytes:
    return _check_blob("attribute value", value)


def _padding(value: bytes | None) -> bytes | None:
    return None if value is None else _check_blob("PADDING", value)


def _transaction_id(value: bytes) -> bytes:
    value = bytes(value)
    if len(value) != 12:
        raise ValueError(f"transaction id must be 12 bytes, got {len(value)}")
    return value


def _attribute_types(value: Iterable[int] | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    types = tuple(value)
    for kind in types:
        if not 0 <= kind <= 0xFFFF:
            raise ValueError(f"attribute type {kind} is outside 0..0xFFFF")
    return types


def _raw_attributes(value: Iterable[RawAttribute]) -> tuple[RawAttribute, ...]:
    attributes = tuple(value)
    for kind in _INTEGRITY_ORDER:
        if sum(attribute.type == kind for attribute in attributes) > 1:
            raise ValueError(f"at most one {AttributeType(kind).name} per message")
    # RFC 8489 places the integrity attributes last (only FINGERPRINT follows them).
    return tuple(sorted(attributes, key=lambda a: _INTEGRITY_ORDER.get(a.type, 0)))


@attrs.frozen
class RawAttribute:
    """An attribute carried as its type and undecoded value (without padding)."""

    type: int = attrs.field()
    value: bytes = attrs.field(converter=_attribute_value)

    @type.validator
    def _check_type(self, _: attrs.Attribute[int], value: int) -> None:
        if not 0 <= value <= 0xFFFF:
            raise ValueError(f"attribute type {value} is outside 0..0xFFFF")
        if value in _TYPED or value == AttributeType.FINGERPRINT:
            raise ValueError(
                f"{AttributeType(value).name} has a typed field in Message; set that instead"
            )

    @property
    def comprehension_required(self) -> bool:
        """True for types 0x0000-0x7FFF, which an agent must understand to process a message."""
        return self.type < 0x8000


@attrs.frozen
class ErrorCode:
    """ERROR-CODE: a code from 300 to 699 and a UTF-8 reason phrase."""

    code: int = attrs.field()
    reason: str = attrs.field(default="", converter=_reason)

    @code.validator
    def _check_code(self, _: attrs.Attribute[int], code: int) -> None:
        if isinstance(code, bool) or not isinstance(code, int):
            raise TypeError(f"error code must be an int, got {code!r}")
        if not 300 <= code <= 699:
            raise ValueError(f"error code {code} is outside 300..699")


@attrs.frozen
class ChangeRequest:
    """CHANGE-REQUEST (RFC 5780): ask the server to answer from its other IP and/or port."""

    change_ip: bool = False
    change_port: bool = False


def _encode_address(address: Address, transaction_id: bytes) -> bytes:
    ip = ipaddress.ip_address(address[0])
    family = _FAMILY_IPV4 if ip.version == 4 else _FAMILY_IPV6
    return struct.pack("!BBH", 0, family, address[1]) + ip.packed


def _decode_address(value: bytes, transaction_id: bytes) -> Address:
    if len(value) < 4:
        raise ValueError(f"{len(value)} bytes, an address needs at least 8")
    family = value[1]
    size = {_FAMILY_IPV4: 4, _FAMILY_IPV6: 16}.get(family)
    if size is None:
        raise ValueError(f"unknown address family {family:#04x}")
    if len(value) != 4 + size:
        raise ValueError(
            f"{len(value)} bytes, an IPv{4 if size == 4 else 6} address needs {4 + size}"
        )
    (port,) = struct.unpack_from("!H", value, 2)
    return (str(ipaddress.ip_address(value[4:])), port)


def _xor(value: bytes, transaction_id: bytes) -> bytes:
    """XOR the port and ip of an address value with the cookie and transaction id."""
    mask = bytes(2) + _COOKIE_BYTES[:2] + _COOKIE_BYTES + transaction_id
    head = bytes(a ^ b for a, b in zip(value, mask, strict=False))
    return head + value[len(mask) :]


def _encode_xor_address(address: Address, transaction_id: bytes) -> bytes:
    return _xor(_encode_address(address, transaction_id), transaction_id)


def _decode_xor_address(value: bytes, transaction_id: bytes) -> Address:
    return _decode_address(_xor(value, transaction_id), transaction_id)


def _encode_error(error: ErrorCode, transaction_id: bytes) -> bytes:
    hundreds, number = divmod(error.code, 100)
    return struct.pack("!HBB", 0, hundreds, number) + error.reason.encode("utf-8")


def _decode_error(value: bytes, transaction_id: bytes) -> ErrorCode:
    if len(value) < 4:
        raise ValueError(f"{len(value)} bytes, at least 4 needed")
    hundreds, number = value[2] & 0x07, value[3]
    if number > 99:
        raise ValueError(f"error number {number} is above 99")
    return ErrorCode(hundreds * 100 + number, value[4:].decode("utf-8"))


def _encode_types(types: tuple[int, ...], transaction_id: bytes) -> bytes:
    return struct.pack(f"!{len(types)}H", *types)


def _decode_types(value: bytes, transaction_id: bytes) -> tuple[int, ...]:
    if len(value) % 2:
        raise ValueError(f"odd length {len(value)}")
    return struct.unpack(f"!{len(value) // 2}H", value)


def _encode_text(text: str, transaction_id: bytes) -> bytes:
    return text.encode("utf-8")


def _decode_text(value: bytes, transaction_id: bytes) -> str:
    return value.decode("utf-8")


def _encode_change(change: ChangeRequest, transaction_id: bytes) -> bytes:
    flags = (_CHANGE_IP if change.change_ip else 0) | (_CHANGE_PORT if change.change_port else 0)
    return flags.to_bytes(4, "big")


def _decode_change(value: bytes, transaction_id: bytes) -> ChangeRequest:
    if len(value) != 4:
        raise ValueError(f"{len(value)} bytes, 4 needed")
    return ChangeRequest(
        change_ip=bool(value[3] & _CHANGE_IP), change_port=bool(value[3] & _CHANGE_PORT)
    )


def _encode_response_port(port: int, transaction_id: bytes) -> bytes:
    return struct.pack("!HH", port, 0)


def _decode_response_port(value: bytes, transaction_id: bytes) -> int:
    if len(value) != 4:
        raise ValueError(f"{len(value)} bytes, 4 needed")
    port: int = struct.unpack_from("!H", value)[0]
    return port


def _encode_bytes(value: bytes, transaction_id: bytes) -> bytes:
    return value


def _decode_bytes(value: bytes, transaction_id: bytes) -> bytes:
    return value


@attrs.frozen
class _Codec:
    """How one typed Message field maps to one attribute type."""

    field: str
    type: AttributeType
    encode: Callable[[Any, bytes], bytes]
    decode: Callable[[bytes, bytes], Any]


# In encoding order.
_CODECS: Final = (
    _Codec("mapped_address", AttributeType.MAPPED_ADDRESS, _encode_address, _decode_address),
    _Codec(
        "xor_mapped_address",
        AttributeType.XOR_MAPPED_ADDRESS,
        _encode_xor_address,
        _decode_xor_address,
    ),
    _Codec("response_origin", AttributeType.RESPONSE_ORIGIN, _encode_address, _decode_address),
    _Codec("other_address", AttributeType.OTHER_ADDRESS, _encode_address, _decode_address),
    _Codec("error", AttributeType.ERROR_CODE, _encode_error, _decode_error),
    _Codec("unknown_attributes", AttributeType.UNKNOWN_ATTRIBUTES, _encode_types, _decode_types),
    _Codec("change_request", AttributeType.CHANGE_REQUEST, _encode_change, _decode_change),
    _Codec(
        "response_port",
        AttributeType.RESPONSE_PORT,
        _encode_response_port,
        _decode_response_port,
    ),
    _Codec("software", AttributeType.SOFTWARE, _encode_text, _decode_text),
    _Codec("padding", AttributeType.PADDING, _encode_bytes, _decode_bytes),
)
_TYPED: Final[dict[int, _Codec]] = {codec.type: codec for codec in _CODECS}

_KNOWN_OPAQUE: Final = frozenset(AttributeType) - set(_TYPED) - {AttributeType.FINGERPRINT}
"""RFC 8489 attributes (authentication, ALTERNATE-SERVER) understood enough to pass through."""


@attrs.frozen(kw_only=True)
class Message:
    """One STUN message; ``None`` fields are absent attributes.

    `raw_attributes` holds every attribute without a typed field, in wire order, except that
    MESSAGE-INTEGRITY and MESSAGE-INTEGRITY-SHA256 are kept last, where RFC 8489 puts them.
    `fingerprint` adds (on encode) or reports (on decode, after verifying it) a FINGERPRINT.
    """

    message_class: MessageClass = attrs.field(converter=MessageClass)
    transaction_id: bytes = attrs.field(converter=_transaction_id)
    method: int = attrs.field(default=BINDING)
    mapped_address: Address | None = attrs.field(default=None, converter=_optional_address)
    xor_mapped_address: Address | None = attrs.field(default=None, converter=_optional_address)
    response_origin: Address | None = attrs.field(default=None, converter=_optional_address)
    other_address: Address | None = attrs.field(default=None, converter=_optional_address)
    error: ErrorCode | None = None
    unknown_attributes: tuple[int, ...] | None = attrs.field(
        default=None, converter=_attribute_types
    )
    change_request: ChangeRequest | None = None
    response_port: int | None = attrs.field(default=None, converter=_optional_port)
    software: str | None = attrs.field(default=None, converter=_software)
    padding: bytes | None = attrs.field(default=None, converter=_padding)
    raw_attributes: tuple[RawAttribute, ...] = attrs.field(default=(), converter=_raw_attributes)
    fingerprint: bool = True

    @method.validator
    def _check_method(self, _: attrs.Attribute[int], method: int) -> None:
        if isinstance(method, bool) or not isinstance(method, int):
            raise TypeError(f"method must be an int, got {method!r}")
        if not 0 <= method <= 0xFFF:
            raise ValueError(f"method {method:#x} does not fit in 12 bits")

    @property
    def unknown_required(self) -> tuple[int, ...]:
        """Comprehension-required attribute types this codec does not understand, once each.

        A server answers a request that has any with `unknown_attributes_response`; a client
        treats such a response as a failed transaction (RFC 8489 section 6.3).
        """
        seen = dict.fromkeys(
            attribute.type
            for attribute in self.raw_attributes
            if attribute.comprehension_required and attribute.type not in _KNOWN_OPAQUE
        )
        return tuple(seen)

    def encode(self) -> bytes:
        """Serialise, with FINGERPRINT last if `fingerprint` is set.

        Raises ValueError if the attributes do not fit in one STUN message.
        """
        attributes = list(self._attributes())
        length = sum(4 + len(value) + -len(value) % 4 for _, value in attributes)
        length += 8 if self.fingerprint else 0
        if length > MAX_BODY_SIZE:
            raise ValueError(
                f"attributes take {length} bytes, a STUN message holds at most {MAX_BODY_SIZE}"
            )
        message_type = _message_type(self.method, self.message_class)
        message = bytearray(struct.pack("!HHI", message_type, length, MAGIC_COOKIE))
        message += self.transaction_id
        for kind, value in attributes:
            message += struct.pack("!HH", kind, len(value)) + value + bytes(-len(value) % 4)
        if self.fingerprint:
            crc = zlib.crc32(message) ^ _FINGERPRINT_XOR
            message += struct.pack("!HHI", AttributeType.FINGERPRINT, 4, crc)
        return bytes(message)

    def _attributes(self) -> Iterator[tuple[int, bytes]]:
        for codec in _CODECS:
            value = getattr(self, codec.field)
            if value is not None:
                yield codec.type, codec.encode(value, self.transaction_id)
        for attribute in self.raw_attributes:
            yield attribute.type, attribute.value


def _message_type(method: int, message_class: MessageClass) -> int:
    """Interleave the 12 method bits with the 2 class bits (RFC 8489 figure 3)."""
    return (
        (method & 0x000F)
        | (method & 0x0070) << 1
        | (method & 0x0F80) << 2
        | (message_class & 0b01) << 4
        | (message_class & 0b10) << 7
    )


def _split_type(message_type: int) -> tuple[int, MessageClass]:
    method = (message_type & 0x000F) | (message_type & 0x00E0) >> 1 | (message_type & 0x3E00) >> 2
    return method, MessageClass((message_type >> 4 & 0b01) | (message_type >> 7 & 0b10))


def _check_header(data: bytes) -> str | None:
    """Why `data` cannot be a STUN message by its header alone, or None if it can."""
    if len(data) < HEADER_SIZE:
        return f"{len(data)} bytes, shorter than the {HEADER_SIZE}-byte STUN header"
    if data[0] & 0xC0:
        return f"first byte {data[0]:#04x} does not start with two zero bits"
    if data[4:8] != _COOKIE_BYTES:
        return f"magic cookie is {data[4:8].hex()}, not 2112a442"
    length = int.from_bytes(data[2:4], "big")
    if length % 4:
        return f"length field {length} is not a multiple of 4"
    if HEADER_SIZE + length != len(data):
        return f"length field says {length} bytes of attributes, {len(data) - HEADER_SIZE} follow"
    return None


def is_stun(data: bytes) -> bool:
    """Cheap check that a datagram looks like STUN, for demultiplexing a shared UDP socket."""
    return _check_header(data) is None


def decode(data: bytes) -> Message:
    """Parse one whole STUN message (one UDP datagram) and verify its FINGERPRINT.

    Attributes after MESSAGE-INTEGRITY (other than MESSAGE-INTEGRITY-SHA256 and FINGERPRINT)
    and repeats of a typed attribute are ignored, as RFC 8489 section 14 asks.
    Raises StunParseError for anything else that is not well-formed.
    """
    data = bytes(data)
    problem = _check_header(data)
    if problem is not None:
        raise StunParseError(problem)
    method, message_class = _split_type(int.from_bytes(data[0:2], "big"))
    transaction_id = data[8:20]
    fields: dict[str, Any] = {}
    raw: list[RawAttribute] = []
    integrity = 0
    fingerprint = False
    offset = HEADER_SIZE
    while offset < len(data):
        if fingerprint:
            raise StunParseError(f"attribute at offset {offset} follows FINGERPRINT")
        # Offsets stay multiples of 4 and so does the length: a whole attribute header fits.
        kind, size = struct.unpack_from("!HH", data, offset)
        start, end = offset + 4, offset + 4 + size
        if end + (-size % 4) > len(data):
            raise StunParseError(f"attribute {kind:#06x} at offset {offset} overruns the message")
        value = data[start:end]
        if kind == AttributeType.FINGERPRINT:
            _verify_fingerprint(data, offset, value)
            fingerprint = True
        elif integrity and _INTEGRITY_ORDER.get(kind, 0) <= integrity:
            pass  # not covered by MESSAGE-INTEGRITY: ignored
        elif kind in _TYPED:
            codec = _TYPED[kind]
            if codec.field not in fields:
                try:
                    fields[codec.field] = codec.decode(value, transaction_id)
                except ValueError as exc:
                    raise StunParseError(f"malformed {codec.type.name}: {exc}") from exc
        else:
            integrity = _INTEGRITY_ORDER.get(kind, integrity)
            raw.append(RawAttribute(kind, value))
        offset = end + (-size % 4)
    try:
        return Message(
            message_class=message_class,
            transaction_id=transaction_id,
            method=method,
            raw_attributes=raw,
            fingerprint=fingerprint,
            **fields,
        )
    except ValueError as exc:
        raise StunParseError(str(exc)) from exc


def _verify_fingerprint(data: bytes, offset: int, value: bytes) -> None:
    if len(value) != 4:
        raise StunParseError(f"FINGERPRINT is {len(value)} bytes, not 4")
    expected = zlib.crc32(data[:offset]) ^ _FINGERPRINT_XOR
    if int.from_bytes(value, "big") != expected:
        raise StunParseError(f"FINGERPRINT is {value.hex()}, the message gives {expected:08x}")


def new_transaction_id() -> bytes:
    """96 random bits, from `secrets` so that off-path attackers cannot guess them."""
    return secrets.token_bytes(12)


def binding_request(
    transaction_id: bytes | None = None,
    *,
    change_ip: bool = False,
    change_port: bool = False,
    response_port: int | None = None,
    padding: bytes | None = None,
    software: str | None = None,
    fingerprint: bool = True,
) -> Message:
    """A Binding request; CHANGE-REQUEST is included only when a change flag is set."""
    change = ChangeRequest(change_ip, change_port) if change_ip or change_port else None
    return Message(
        message_class=MessageClass.REQUEST,
        transaction_id=new_transaction_id() if transaction_id is None else transaction_id,
        change_request=change,
        response_port=response_port,
        padding=padding,
        software=software,
        fingerprint=fingerprint,
    )


def _check_request(request: Message) -> None:
    if request.message_class != MessageClass.REQUEST:
        raise ValueError(f"only requests are answered, not a {request.message_class.name}")


def binding_success(
    request: Message,
    mapped: Address,
    *,
    response_origin: Address | None = None,
    other_address: Address | None = None,
    padding: bytes | None = None,
    software: str | None = None,
    fingerprint: bool = True,
) -> Message:
    """The success response to a Binding request: XOR-MAPPED-ADDRESS plus RFC 5780 extras."""
    _check_request(request)
    if request.method != BINDING:
        raise ValueError(f"method {request.method:#05x} is not Binding")
    return Message(
        message_class=MessageClass.SUCCESS,
        transaction_id=request.transaction_id,
        xor_mapped_address=mapped,
        response_origin=response_origin,
        other_address=other_address,
        padding=padding,
        software=software,
        fingerprint=fingerprint,
    )


def error_response(
    request: Message,
    code: int,
    reason: str | None = None,
    *,
    unknown_attributes: Iterable[int] | None = None,
    software: str | None = None,
    fingerprint: bool = True,
) -> Message:
    """An error response to `request`; `reason` defaults to the RFC's phrase for `code`."""
    _check_request(request)
    if reason is None:
        if code not in _REASONS:
            raise ValueError(f"no standard reason phrase for {code}; pass one")
        reason = _REASONS[code]
    return Message(
        message_class=MessageClass.ERROR,
        transaction_id=request.transaction_id,
        method=request.method,
        error=ErrorCode(code, reason),
        unknown_attributes=unknown_attributes,
        software=software,
        fingerprint=fingerprint,
    )


def unknown_attributes_response(
    request: Message, *, software: str | None = None, fingerprint: bool = True
) -> Message:
    """The 420 response listing the request's unknown comprehension-required attributes."""
    if not request.unknown_required:
        raise ValueError("the request has no unknown comprehension-required attributes")
    return error_response(
        request,
        420,
        unknown_attributes=request.unknown_required,
        software=software,
        fingerprint=fingerprint,
    )
