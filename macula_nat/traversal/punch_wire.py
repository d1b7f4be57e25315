"""Hole-punching wire formats, sans-IO: the control messages and the probe frames.

Two nodes that punch a hole already share a relayed (or otherwise indirect) QUIC connection, end
to end encrypted and authenticated. Over it they exchange *control messages*, which need no
signature of their own:

========  =====================  ===========================================================
message   direction              meaning
========  =====================  ===========================================================
Offer     initiator to responder start (or restart) punching: link id, probe key, attempt,
                                 candidates, predicted mappings, NAT profile
Answer    responder to initiator the responder's candidates, predicted mappings and profile
Sync      initiator to responder "start sending now"; the initiator waits RTT/2, then sends
Again     responder to initiator "punch again now": the responder's UDP works again after
                                 being blocked (the initiator alone starts punches)
========  =====================  ===========================================================

A control message is a canonical bencoded dictionary with one-letter keys: ``t`` the type
(``o``, ``a``, ``s``, ``g``), ``i`` the link id, ``k`` the key, ``n`` the attempt, ``c`` the
candidates, ``m`` the predicted mappings, ``p`` the profile (compact JSON, without the derived
``nat_type``, without null fields, ``udp_blocked`` only when true). An address list is one
string of entries, each a family byte (4 or 6) and the compact peer info
(:func:`~macula_nat.dht.compact.encode_peer`), or a 0 byte and a port alone when the IP is the
previous entry's. Predicted mappings share the NAT's public IP, so an Offer with 32 IPv6
candidates and 32 predicted mappings is about 810 bytes before its profile
(which adds 300-450 bytes of JSON, depending on the length of its addresses' text).

*Probe frames* then travel as raw UDP datagrams between the nodes' public addresses, on the
socket that STUN (first byte 0-3), relay frames (4-15) and QUIC (64-127, 192-255) share. Their
first bytes are 0x10-0x13 (16-19: ZRTP's in RFC 7983, which never runs on this socket):

``type (1) | link id (8) | nonce (8) | address (19) | tag (16)``, 52 bytes, where the type is
``0x10 | kind << 1 | role``, the address is the *challenged* one (a family byte 4 or 6, the IP in
16 bytes, an IPv4 one zero-padded, and the port): a PROBE names the address it was sent to, its
ACK echoes it. The tag is HMAC-SHA256 over the first 36 bytes under the Offer's key, cut to 16
bytes. A spoofed probe fails the tag. A PROBE and its ACK have the same size, so an answer never
amplifies. Intended use by the caller, which this module cannot enforce (see
:mod:`~macula_nat.traversal.prover`): find the key with :func:`peek_link_id`, then accept a frame
only if its role is the *other* side's (so our own probe reflected back is refused), answer a
PROBE only once (its nonce) and never one that arrives from the very address it was sent to (it
went through a forwarder there), and count an ACK only if it echoes a nonce we sent to the very
address the ACK comes from and names.

:func:`decode_control` raises only :class:`ControlError`, :func:`decode_probe` only
:class:`ProbeError` (for a well-sized key), whatever the bytes.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
import json
import math
from collections.abc import Callable
from typing import Any, Final

import attrs

from macula_nat.dht import bencoding
from macula_nat.dht.compact import Address, check_address, decode_peer, encode_peer, is_ipv6
from macula_nat.nat.profile import NatProfile
from macula_nat.net.address import normalise_address, normalise_addresses

__all__ = [
    "ADDRESS_SIZE",
    "FIRST_BYTES",
    "FRAME_SIZE",
    "KEY_SIZE",
    "LINK_ID_SIZE",
    "MAX_CANDIDATES",
    "NONCE_SIZE",
    "TAG_SIZE",
    "Again",
    "Answer",
    "ControlError",
    "ControlMessage",
    "FrameKind",
    "Offer",
    "ProbeError",
    "ProbeFrame",
    "Role",
    "Sync",
    "decode_control",
    "decode_probe",
    "encode_control",
    "encode_probe",
    "is_probe_frame",
    "peek_link_id",
]

LINK_ID_SIZE: Final = 8
"""Bytes of a link id: names one connection's punch state on both sides."""
KEY_SIZE: Final = 32
"""Bytes of the HMAC key that authenticates probe frames."""
MAX_CANDIDATES: Final = 32
"""The most candidates, and the most predicted mappings, one message carries."""
NONCE_SIZE: Final = 8
ADDRESS_SIZE: Final = 1 + 16 + 2
"""The challenged address in a probe frame: family byte, IP (IPv4 zero-padded), port."""
TAG_SIZE: Final = 16
FRAME_SIZE: Final = 1 + LINK_ID_SIZE + NONCE_SIZE + ADDRESS_SIZE + TAG_SIZE
"""52: every probe frame's size."""
FIRST_BYTES: Final = frozenset(range(0x10, 0x14))
"""First bytes reserved for probe frames on the shared socket."""

_SIGNED: Final = 1 + LINK_ID_SIZE + NONCE_SIZE + ADDRESS_SIZE
_ADDRESS_AT: Final = 1 + LINK_ID_SIZE + NONCE_SIZE
_SAME_IP: Final = 0
_FAMILY: Final = {4: 6, 6: 18}
"""Family byte to the size of the compact peer info that follows it."""


class ControlError(ValueError):
    """Bytes that are not a control message."""


class ProbeError(ValueError):
    """Bytes that are not a probe frame under the given key."""


# -- validators ---------------------------------------------------------------------------------


def _sized(size: int) -> Callable[[object, attrs.Attribute[bytes], bytes], None]:
    def check(_: object, attribute: attrs.Attribute[bytes], value: bytes) -> None:
        if type(value) is not bytes or len(value) != size:
            raise ValueError(f"{attribute.name} must be {size} bytes, not {value!r}")

    return check


def _check_attempt(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or value < 1:
        raise ValueError(f"{attribute.name} must be an int >= 1, not {value!r}")


def _check_addresses(
    _: object, attribute: attrs.Attribute[tuple[Address, ...]], value: tuple[Address, ...]
) -> None:
    if len(value) > MAX_CANDIDATES:
        raise ValueError(f"at most {MAX_CANDIDATES} {attribute.name}, not {len(value)}")
    for address in value:
        check_address(address)  # what compact peer info cannot carry (an IPv6 scope id)


def _check_profile(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if not isinstance(value, NatProfile):
        raise ValueError(f"{attribute.name} must be a NatProfile or None, not {value!r}")
    if not math.isfinite(value.detected_at):
        raise ValueError(f"{attribute.name}.detected_at must be finite for JSON")


# -- control messages ---------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Offer:
    """Initiator to responder: start (or restart) punching, with the key for the probes."""

    link_id: bytes = attrs.field(validator=_sized(LINK_ID_SIZE))
    key: bytes = attrs.field(validator=_sized(KEY_SIZE), repr=False)
    attempt: int = attrs.field(validator=_check_attempt)
    candidates: tuple[Address, ...] = attrs.field(
        converter=normalise_addresses, validator=_check_addresses
    )
    """Where the sender can be reached: its observed mapping, its LAN addresses."""
    predicted: tuple[Address, ...] = attrs.field(
        default=(), converter=normalise_addresses, validator=_check_addresses
    )
    """The sender's next mappings by port prediction, nearest first."""
    profile: NatProfile | None = attrs.field(default=None, validator=_check_profile)


@attrs.frozen(kw_only=True)
class Answer:
    """Responder to initiator: where the responder can be reached, for the Offer's attempt."""

    link_id: bytes = attrs.field(validator=_sized(LINK_ID_SIZE))
    attempt: int = attrs.field(validator=_check_attempt)
    candidates: tuple[Address, ...] = attrs.field(
        converter=normalise_addresses, validator=_check_addresses
    )
    predicted: tuple[Address, ...] = attrs.field(
        default=(), converter=normalise_addresses, validator=_check_addresses
    )
    profile: NatProfile | None = attrs.field(default=None, validator=_check_profile)


@attrs.frozen(kw_only=True)
class Sync:
    """Initiator to responder: "start sending now"; the initiator waits RTT/2, then sends too."""

    link_id: bytes = attrs.field(validator=_sized(LINK_ID_SIZE))
    attempt: int = attrs.field(validator=_check_attempt)


@attrs.frozen(kw_only=True)
class Again:
    """Responder to initiator: punch again now (the responder's UDP answers again after being
    blocked). ``link_id`` is the last Offer's (zeros when none came: the initiator never
    punched); ``attempt`` is 1 then."""

    link_id: bytes = attrs.field(validator=_sized(LINK_ID_SIZE))
    attempt: int = attrs.field(validator=_check_attempt)


ControlMessage = Offer | Answer | Sync | Again

_TYPES: Final[dict[bytes, type[ControlMessage]]] = {
    b"o": Offer,
    b"a": Answer,
    b"s": Sync,
    b"g": Again,
}
_TAGS: Final = {cls: tag for tag, cls in _TYPES.items()}
_KEYS: Final[dict[type[ControlMessage], frozenset[bytes]]] = {
    Offer: frozenset({b"t", b"i", b"k", b"n", b"c", b"m", b"p"}),
    Answer: frozenset({b"t", b"i", b"n", b"c", b"m", b"p"}),
    Sync: frozenset({b"t", b"i", b"n"}),
    Again: frozenset({b"t", b"i", b"n"}),
}


def _encode_addresses(addresses: tuple[Address, ...]) -> bytes:
    parts = []
    previous: str | None = None
    for address in addresses:
        ip, port = address
        if ip == previous:
            parts.append(bytes((_SAME_IP,)) + port.to_bytes(2, "big"))
        else:
            parts.append(bytes((6 if is_ipv6(address) else 4,)) + encode_peer(address))
        previous = ip
    return b"".join(parts)


def _encode_profile(profile: NatProfile) -> bytes:
    fields = profile.to_json()
    fields.pop("nat_type", None)  # derived; from_json ignores it
    fields.pop("mapped", None)  # a candidate of the message; nodes before it refuse the field
    if not fields.get("udp_blocked"):
        fields.pop("udp_blocked", None)  # nodes before it refuse the field: only when true
    compact = {name: value for name, value in fields.items() if value is not None}
    return json.dumps(compact, separators=(",", ":"), allow_nan=False).encode()


def encode_control(message: ControlMessage) -> bytes:
    """The wire form of a control message (canonical bencoding)."""
    value: dict[bytes, object] = {
        b"t": _TAGS[type(message)],
        b"i": message.link_id,
        b"n": message.attempt,
    }
    if isinstance(message, Offer):
        value[b"k"] = message.key
    if isinstance(message, Offer | Answer):
        value[b"c"] = _encode_addresses(message.candidates)
        if message.predicted:
            value[b"m"] = _encode_addresses(message.predicted)
        if message.profile is not None:
            value[b"p"] = _encode_profile(message.profile)
    return bencoding.encode(value)


def _decode_addresses(data: object, name: str) -> tuple[Address, ...]:
    if not isinstance(data, bytes):
        raise ControlError(f"{name} must be a byte string")
    addresses: list[Address] = []
    offset = 0
    while offset < len(data):
        if len(addresses) == MAX_CANDIDATES:
            raise ControlError(f"more than {MAX_CANDIDATES} {name}")
        family = data[offset]
        if family == _SAME_IP:
            if not addresses:
                raise ControlError(f"{name}: a port-only entry needs an address before it")
            if offset + 3 > len(data):
                raise ControlError(f"{name}: a port-only entry cut short")
            address = (addresses[-1][0], int.from_bytes(data[offset + 1 : offset + 3], "big"))
            offset += 3
        elif family in _FAMILY:
            end = offset + 1 + _FAMILY[family]
            if end > len(data):
                raise ControlError(f"{name}: an IPv{family} entry cut short")
            address = decode_peer(data[offset + 1 : end])
            offset = end
        else:
            raise ControlError(f"{name}: unknown address family byte {family}")
        addresses.append(address)
    return tuple(addresses)


_PROFILE_TYPES: Final[dict[str, tuple[type, ...]]] = {
    "public_port": (int,),
    "detected_at": (int, float),
    "nat_present": (bool,),
    "hairpinning": (bool,),
    "port_delta": (int,),
    "udp_blocked": (bool,),
}
"""JSON types of the profile fields NatProfile leaves unchecked (a bool is not an int here)."""


def _decode_profile(data: object) -> NatProfile:
    if not isinstance(data, bytes):
        raise ControlError("the profile must be a byte string")
    fields = json.loads(data, parse_constant=_reject_constant)
    if not isinstance(fields, dict):
        raise ControlError("the profile must be a JSON object")
    unknown = fields.keys() - {field.name for field in attrs.fields(NatProfile)}
    if unknown:
        raise ControlError(f"unknown profile fields {sorted(unknown)}")
    if None in fields.values():
        raise ControlError("a null profile field (absent fields are left out)")
    for name, types in _PROFILE_TYPES.items():
        if name in fields and type(fields[name]) not in types:
            raise ControlError(f"profile {name} must be {' or '.join(t.__name__ for t in types)}")
    return NatProfile.from_json(fields)


def _reject_constant(name: str) -> float:
    raise ControlError(f"the profile holds {name}, which is not a number")


def _bytes(value: dict[bytes, object], key: bytes, size: int | None = None) -> bytes:
    field = value.get(key)
    if type(field) is not bytes:
        raise ControlError(f"field {key.decode()!r} must be a byte string")
    if size is not None and len(field) != size:
        raise ControlError(f"field {key.decode()!r} must be {size} bytes, not {len(field)}")
    return field


def _decode_control(data: bytes) -> ControlMessage:
    value = bencoding.decode(data)
    if not isinstance(value, dict):
        raise ControlError("a control message is a dictionary")
    tag = _bytes(value, b"t")
    if tag not in _TYPES:
        raise ControlError(f"unknown control message type {tag!r}")
    cls = _TYPES[tag]
    unknown = value.keys() - _KEYS[cls]
    if unknown:
        raise ControlError(f"unknown fields {sorted(unknown)} in {cls.__name__}")
    link_id = _bytes(value, b"i", LINK_ID_SIZE)
    attempt = value.get(b"n")
    if type(attempt) is not int or attempt < 1:
        raise ControlError("field 'n' (attempt) must be an int >= 1")
    if cls is Sync:
        return Sync(link_id=link_id, attempt=attempt)
    if cls is Again:
        return Again(link_id=link_id, attempt=attempt)
    candidates = _decode_addresses(_bytes(value, b"c"), "candidates")
    predicted = _decode_addresses(value.get(b"m", b""), "predicted")
    profile = None if b"p" not in value else _decode_profile(value[b"p"])
    if cls is Answer:
        return Answer(
            link_id=link_id,
            attempt=attempt,
            candidates=candidates,
            predicted=predicted,
            profile=profile,
        )
    return Offer(
        link_id=link_id,
        key=_bytes(value, b"k", KEY_SIZE),
        attempt=attempt,
        candidates=candidates,
        predicted=predicted,
        profile=profile,
    )


def decode_control(data: bytes) -> ControlMessage:
    """The control message in ``data``; :class:`ControlError`, and nothing else, otherwise."""
    try:
        return _decode_control(bytes(data))
    except ControlError:
        raise
    except Exception as exc:  # bencoding, JSON, address and field validation errors alike
        raise ControlError(f"not a control message: {exc}") from None


# -- probe frames -------------------------------------------------------------------------------


class Role(enum.IntEnum):
    """Which side of the punch a frame's sender is."""

    INITIATOR = 0
    RESPONDER = 1


class FrameKind(enum.IntEnum):
    PROBE = 0
    ACK = 1


@attrs.frozen
class ProbeFrame:
    """One punch datagram; ``role`` is the sender's, and an ACK echoes its PROBE's nonce and
    address (the one the PROBE was sent to)."""

    kind: FrameKind = attrs.field(validator=attrs.validators.instance_of(FrameKind))
    role: Role = attrs.field(validator=attrs.validators.instance_of(Role))
    link_id: bytes = attrs.field(validator=_sized(LINK_ID_SIZE))
    nonce: bytes = attrs.field(validator=_sized(NONCE_SIZE))
    address: Address = attrs.field(converter=normalise_address)
    """The challenged address: where the PROBE was sent."""


def _encode_address(address: Address) -> bytes:
    ip, port = address
    packed = ipaddress.ip_address(ip).packed
    return (
        bytes((6 if len(packed) == 16 else 4,)) + packed.ljust(16, b"\0") + port.to_bytes(2, "big")
    )


def _decode_address(data: bytes) -> Address:
    family, packed, port = data[0], data[1:17], int.from_bytes(data[17:19], "big")
    if family == 4 and not any(packed[4:]):
        return str(ipaddress.IPv4Address(packed[:4])), port
    if family == 6:
        return str(ipaddress.IPv6Address(packed)), port
    raise ProbeError(f"not a challenged address: family byte {family}, IP {packed.hex()}")


def _check_key(key: bytes) -> None:
    if type(key) is not bytes or len(key) != KEY_SIZE:
        raise ValueError(f"a probe key is {KEY_SIZE} bytes")  # a caller's bug, not bad input


def _tag(key: bytes, signed: bytes) -> bytes:
    return hmac.digest(key, signed, hashlib.sha256)[:TAG_SIZE]


def is_probe_frame(data: bytes) -> bool:
    """True if ``data`` has a probe frame's size and first byte (not STUN, relay or QUIC)."""
    return len(data) == FRAME_SIZE and data[0] in FIRST_BYTES


def encode_probe(frame: ProbeFrame, key: bytes) -> bytes:
    """The 52-byte datagram for ``frame``, tagged under ``key`` (the Offer's)."""
    _check_key(key)
    first = bytes((0x10 | frame.kind << 1 | frame.role,))
    signed = first + frame.link_id + frame.nonce + _encode_address(frame.address)
    return signed + _tag(key, signed)


def peek_link_id(data: bytes) -> bytes | None:
    """The link id of what looks like a probe frame, tag unchecked (it picks the key), or None."""
    return bytes(data[1 : 1 + LINK_ID_SIZE]) if is_probe_frame(data) else None


def decode_probe(data: bytes, key: bytes) -> ProbeFrame:
    """The probe frame in ``data`` if its tag is good under ``key``; :class:`ProbeError` if not.

    A wrong-sized ``key`` is a ValueError (the caller's mistake, whatever ``data`` holds).
    """
    _check_key(key)
    data = bytes(data)
    if len(data) != FRAME_SIZE:
        raise ProbeError(f"a probe frame is {FRAME_SIZE} bytes, not {len(data)}")
    if data[0] not in FIRST_BYTES:
        raise ProbeError(f"first byte {data[0]:#04x} is not a probe frame type")
    if not hmac.compare_digest(data[_SIGNED:], _tag(key, data[:_SIGNED])):
        raise ProbeError("bad probe tag (another key, or altered)")
    return ProbeFrame(
        FrameKind(data[0] >> 1 & 1),
        Role(data[0] & 1),
        data[1 : 1 + LINK_ID_SIZE],
        data[1 + LINK_ID_SIZE : _ADDRESS_AT],
        _decode_address(data[_ADDRESS_AT:_SIGNED]),
    )
