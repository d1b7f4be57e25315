"""Relay frames, sans-IO: every datagram between a node and its relay, encoded and decoded.

Relay frames share each node's one UDP socket with STUN (first byte 0-3) and QUIC (64-127 short
headers, 192-255 long headers), so the first byte tells them apart (RFC 7983 style). Ours use
4-15, which neither uses and which no RFC 7983 protocol (DTLS 20-63, TURN channels 64-79) claims:

====  ==========  ==================================================================
byte  frame       layout after the first byte (integers big-endian)
====  ==========  ==================================================================
4     HELLO       client nonce (16), node id (32), zero padding to 96 bytes in all
5     CHALLENGE   client nonce (16), relay id (32), cookie (24), observed address
6     REGISTER    client nonce (16), node id (32), cookie (24), ephemeral X25519 key
                  (32), observed address, signature (64)
7     REGISTERED  client nonce (16), registration (4), ephemeral X25519 key (32),
                  ttl seconds (4), observed address, signature (64)
8     REFUSED     client nonce (16), reason (1)
9     DATA        sealed: session (4), payload
10    CONTROL     sealed: kind (1), the kind's fields
11-15             reserved
====  ==========  ==================================================================

An address is a family byte (4 or 6), the IP (4 or 16 bytes) and the port (2). A *sealed* frame
is ``type (1) | registration (4) | counter (8) | body | tag (16)``: the tag authenticates
everything before it (see :mod:`macula_nat.relay.link`). HELLO is padded so that the relay's
CHALLENGE is never larger than what drew it: answering it amplifies nothing.

Control kinds: RELAY_REQUEST (request id, target node id), RELAY_ACCEPTED (request id, session,
peer node id; request id 0 tells the target of a session another node opened), REQUEST_REFUSED
(request id, reason), KEEPALIVE (echo, padding so that the PONG is no larger), PONG (echo, load
in permille, observed address), CLOSE (session, reason; session 0 ends the registration),
SESSION_ACK (session: the target heard of it), PATH_CHALLENGE (nonce (8): the relay checks that
a node's new source address reaches it, RFC 9000 8.2 style), PATH_RESPONSE (the nonce back,
sent from that address), DIRECTORY_QUERY (request id, operation (1), its body) and
DIRECTORY_ANSWER (request id, status (1), its body): a node whose UDP is blocked uses the
relay's directory through them (:mod:`.directory_path`); a body is at most
:data:`MAX_DIRECTORY_BODY` bytes.

:func:`decode` turns any bytes into a frame or raises :class:`FrameError`, nothing else.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections.abc import Callable
from typing import Final

import attrs

from macula_nat.identity import NODE_ID_SIZE, SIGNATURE_SIZE, NodeId
from macula_nat.net.address import Address, normalise_address

__all__ = [
    "COOKIE_SIZE",
    "DATA_OVERHEAD",
    "FIRST_BYTES",
    "HELLO_SIZE",
    "KEY_SIZE",
    "MAX_DIRECTORY_BODY",
    "MAX_PAYLOAD",
    "NONCE_SIZE",
    "PATH_NONCE_SIZE",
    "SEALED_HEADER_SIZE",
    "TAG_SIZE",
    "Challenge",
    "Close",
    "ControlFrame",
    "ControlKind",
    "Data",
    "DirectoryAnswer",
    "DirectoryOp",
    "DirectoryQuery",
    "DirectoryStatus",
    "FrameError",
    "FrameType",
    "HandshakeFrame",
    "Hello",
    "Keepalive",
    "PathChallenge",
    "PathResponse",
    "Pong",
    "Reason",
    "Refused",
    "Register",
    "Registered",
    "RelayAccepted",
    "RelayRequest",
    "RequestRefused",
    "Sealed",
    "SessionAck",
    "SessionFrame",
    "decode",
    "decode_body",
    "encode",
    "encode_address",
    "encode_body",
    "is_relay_frame",
]


class FrameError(ValueError):
    """Bytes that are not a well-formed relay frame."""


class FrameType(enum.IntEnum):
    """The first byte of a relay frame."""

    HELLO = 4
    CHALLENGE = 5
    REGISTER = 6
    REGISTERED = 7
    REFUSED = 8
    DATA = 9
    CONTROL = 10


class ControlKind(enum.IntEnum):
    RELAY_REQUEST = 1
    RELAY_ACCEPTED = 2
    REQUEST_REFUSED = 3
    KEEPALIVE = 4
    PONG = 5
    CLOSE = 6
    SESSION_ACK = 7
    PATH_CHALLENGE = 8
    PATH_RESPONSE = 9
    DIRECTORY_QUERY = 10
    DIRECTORY_ANSWER = 11


class DirectoryOp(enum.IntEnum):
    """What a DIRECTORY_QUERY asks of the relay's directory."""

    RESOLVE = 1
    """Body: the target node id (32); answered with its record."""
    PUBLISH = 2
    """Body: the node's own record as a signed BEP 44 item (see :mod:`.directory_path`)."""
    LIST_RELAYS = 3
    """Body: empty; answered with the relays' addresses."""


class DirectoryStatus(enum.IntEnum):
    OK = 0
    NOT_FOUND = 1
    """RESOLVE: no live record."""
    FAILED = 2
    """The relay's directory could not answer (unreachable, timed out)."""
    REFUSED = 3
    """Malformed, not signed by the registered node, or the relay has no directory."""
    BUSY = 4
    """Over the registration's query rate, or too many queries at the relay at once."""


class Reason(enum.IntEnum):
    """Why a registration or session was refused or ended; ``label`` is its snake_case name."""

    NORMAL = 0
    MAX_SESSIONS_REACHED = 1
    UNKNOWN_TARGET = 2
    PER_NODE_CAP = 3
    RELAY_DISABLED = 4
    IDLE_TIMEOUT = 5
    SESSION_TIMEOUT = 6
    REGISTRATION_EXPIRED = 7
    PEER_GONE = 8
    SESSION_FAILED = 9
    UNKNOWN_SESSION = 10
    SELF_TARGET = 11
    MAX_REGISTRATIONS = 12
    STALE_CHALLENGE = 13
    RELAY_SHUTDOWN = 14
    SOURCE_SHARE = 15
    """The table was full and the node's source (IP, IPv6 /64) held its share or more."""

    @property
    def label(self) -> str:
        return self.name.lower()


FIRST_BYTES: Final = range(4, 16)
"""First bytes reserved for relay frames on the shared socket."""
NONCE_SIZE: Final = 16
PATH_NONCE_SIZE: Final = 8
COOKIE_SIZE: Final = 24
KEY_SIZE: Final = 32
TAG_SIZE: Final = 16
HELLO_SIZE: Final = 96
"""HELLO's fixed size: no smaller than the largest CHALLENGE (92 bytes, IPv6)."""
KEEPALIVE_PADDING: Final = 24
SEALED_HEADER_SIZE: Final = 13
DATA_OVERHEAD: Final = SEALED_HEADER_SIZE + 4 + TAG_SIZE
"""Bytes a DATA frame adds to its payload."""
MAX_DIRECTORY_BODY: Final = 1200
"""The largest body of a directory query or answer: a BEP 44 value is at most 1000 bytes."""
MAX_PAYLOAD: Final = 65507 - DATA_OVERHEAD
"""The largest payload a DATA frame carries in one IPv4 UDP datagram."""

_U16: Final = 0xFFFF
_U32: Final = 0xFFFF_FFFF
_U64: Final = 0xFFFF_FFFF_FFFF_FFFF
_SEALED: Final = struct.Struct(">BIQ")
_U32_STRUCT: Final = struct.Struct(">I")


# -- values -------------------------------------------------------------------------------------


def _sized(size: int) -> Callable[[object, attrs.Attribute[bytes], bytes], None]:
    def check(_: object, attribute: attrs.Attribute[bytes], value: bytes) -> None:
        if type(value) is not bytes or len(value) != size:
            raise ValueError(f"{attribute.name} must be {size} bytes, not {value!r}")

    return check


def _uint(limit: int, low: int = 0) -> Callable[[object, attrs.Attribute[int], int], None]:
    def check(_: object, attribute: attrs.Attribute[int], value: int) -> None:
        if type(value) is not int or not low <= value <= limit:
            raise ValueError(f"{attribute.name} must be an int in {low}..{limit}, not {value!r}")

    return check


def _address(value: Address) -> Address:
    return normalise_address(value)


@attrs.frozen
class Hello:
    """Node to relay: "I am ``node_id``; challenge me." Answered with a CHALLENGE."""

    client_nonce: bytes = attrs.field(validator=_sized(NONCE_SIZE))
    node_id: NodeId


@attrs.frozen
class Challenge:
    """Relay to node: the relay's id, a fresh stateless cookie, and where the node came from."""

    client_nonce: bytes = attrs.field(validator=_sized(NONCE_SIZE))
    relay_id: NodeId
    cookie: bytes = attrs.field(validator=_sized(COOKIE_SIZE))
    observed: Address = attrs.field(converter=_address)


@attrs.frozen
class Register:
    """Node to relay: the cookie back, an ephemeral key, and the node's signature over both."""

    client_nonce: bytes = attrs.field(validator=_sized(NONCE_SIZE))
    node_id: NodeId
    cookie: bytes = attrs.field(validator=_sized(COOKIE_SIZE))
    ephemeral: bytes = attrs.field(validator=_sized(KEY_SIZE))
    observed: Address = attrs.field(converter=_address)
    signature: bytes = attrs.field(validator=_sized(SIGNATURE_SIZE))


@attrs.frozen
class Registered:
    """Relay to node: the registration id, the relay's ephemeral key, and its signature."""

    client_nonce: bytes = attrs.field(validator=_sized(NONCE_SIZE))
    registration: int = attrs.field(validator=_uint(_U32, 1))
    ephemeral: bytes = attrs.field(validator=_sized(KEY_SIZE))
    ttl: int = attrs.field(validator=_uint(_U32))
    observed: Address = attrs.field(converter=_address)
    signature: bytes = attrs.field(validator=_sized(SIGNATURE_SIZE))


@attrs.frozen
class Refused:
    """Relay to node, before registration: no. Unauthenticated; believed only with our nonce."""

    client_nonce: bytes = attrs.field(validator=_sized(NONCE_SIZE))
    reason: Reason


@attrs.frozen
class Data:
    """An opaque payload on a session (end-to-end encrypted by the peers; never read)."""

    session: int = attrs.field(validator=_uint(_U32, 1))
    payload: bytes = attrs.field(validator=attrs.validators.instance_of(bytes))


@attrs.frozen
class RelayRequest:
    request: int = attrs.field(validator=_uint(_U32, 1))
    target: NodeId


@attrs.frozen
class RelayAccepted:
    request: int = attrs.field(validator=_uint(_U32))
    """The request answered; 0 when telling the target of a session another node opened."""
    session: int = attrs.field(validator=_uint(_U32, 1))
    peer: NodeId


@attrs.frozen
class RequestRefused:
    request: int = attrs.field(validator=_uint(_U32, 1))
    reason: Reason


@attrs.frozen
class Keepalive:
    echo: int = attrs.field(validator=_uint(_U64))


@attrs.frozen
class Pong:
    echo: int = attrs.field(validator=_uint(_U64))
    load: int = attrs.field(validator=_uint(1000))
    """Sessions in use per thousand allowed (1000: full or disabled)."""
    observed: Address = attrs.field(converter=_address)


@attrs.frozen
class Close:
    session: int = attrs.field(validator=_uint(_U32))
    """0: the whole registration."""
    reason: Reason


@attrs.frozen
class SessionAck:
    session: int = attrs.field(validator=_uint(_U32, 1))


@attrs.frozen
class PathChallenge:
    """Relay to node, sent to a new source address: answer from there to move the relay."""

    nonce: bytes = attrs.field(validator=_sized(PATH_NONCE_SIZE))


@attrs.frozen
class PathResponse:
    """Node to relay: a :class:`PathChallenge`'s nonce back."""

    nonce: bytes = attrs.field(validator=_sized(PATH_NONCE_SIZE))


def _directory_body(_: object, attribute: attrs.Attribute[bytes], value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) > MAX_DIRECTORY_BODY:
        raise ValueError(f"{attribute.name} must be at most {MAX_DIRECTORY_BODY} bytes")


@attrs.frozen
class DirectoryQuery:
    """Node to relay: ``op`` on the relay's directory (see :class:`DirectoryOp`)."""

    request: int = attrs.field(validator=_uint(_U32, 1))
    op: DirectoryOp
    body: bytes = attrs.field(validator=_directory_body)


@attrs.frozen
class DirectoryAnswer:
    """Relay to node: the answer to query ``request``."""

    request: int = attrs.field(validator=_uint(_U32, 1))
    status: DirectoryStatus
    body: bytes = attrs.field(validator=_directory_body)


HandshakeFrame = Hello | Challenge | Register | Registered | Refused
ControlFrame = (
    RelayRequest
    | RelayAccepted
    | RequestRefused
    | Keepalive
    | Pong
    | Close
    | SessionAck
    | PathChallenge
    | PathResponse
    | DirectoryQuery
    | DirectoryAnswer
)
SessionFrame = Data | ControlFrame


@attrs.frozen
class Sealed:
    """A DATA or CONTROL frame as read off the wire: framing checked, tag not yet verified.

    :meth:`frame` decodes the body; a :class:`~macula_nat.relay.link.Link` checks the tag.
    """

    type: FrameType
    registration: int
    counter: int
    body: bytes
    tag: bytes

    def frame(self) -> SessionFrame:
        return decode_body(self.type, self.body)


# -- encoding -----------------------------------------------------------------------------------


def is_relay_frame(data: bytes) -> bool:
    """True if ``data``'s first byte is in the relay's range (not STUN, not QUIC)."""
    return bool(data) and 4 <= data[0] <= 15


def encode_address(address: Address) -> bytes:
    ip, port = address
    packed = ipaddress.ip_address(ip).packed
    return b"".join((bytes((4 if len(packed) == 4 else 6,)), packed, port.to_bytes(2, "big")))


def encode(frame: HandshakeFrame) -> bytes:
    """The wire form of a handshake frame (sealed frames are built by a link)."""
    if isinstance(frame, Hello):
        head = b"".join((bytes((FrameType.HELLO,)), frame.client_nonce, frame.node_id.raw))
        return head.ljust(HELLO_SIZE, b"\x00")
    if isinstance(frame, Challenge):
        return b"".join(
            (
                bytes((FrameType.CHALLENGE,)),
                frame.client_nonce,
                frame.relay_id.raw,
                frame.cookie,
                encode_address(frame.observed),
            )
        )
    if isinstance(frame, Register):
        return b"".join(
            (
                bytes((FrameType.REGISTER,)),
                frame.client_nonce,
                frame.node_id.raw,
                frame.cookie,
                frame.ephemeral,
                encode_address(frame.observed),
                frame.signature,
            )
        )
    if isinstance(frame, Registered):
        return b"".join(
            (
                bytes((FrameType.REGISTERED,)),
                frame.client_nonce,
                _U32_STRUCT.pack(frame.registration),
                frame.ephemeral,
                _U32_STRUCT.pack(frame.ttl),
                encode_address(frame.observed),
                frame.signature,
            )
        )
    return b"".join((bytes((FrameType.REFUSED,)), frame.client_nonce, bytes((frame.reason,))))


def encode_body(frame: SessionFrame) -> tuple[FrameType, bytes]:
    """The frame type and body of a sealed frame (a link adds header and tag)."""
    if isinstance(frame, Data):
        return FrameType.DATA, _U32_STRUCT.pack(frame.session) + frame.payload
    kind: ControlKind
    if isinstance(frame, RelayRequest):
        kind, fields = ControlKind.RELAY_REQUEST, _U32_STRUCT.pack(frame.request) + frame.target.raw
    elif isinstance(frame, RelayAccepted):
        kind = ControlKind.RELAY_ACCEPTED
        fields = struct.pack(">II", frame.request, frame.session) + frame.peer.raw
    elif isinstance(frame, RequestRefused):
        kind, fields = ControlKind.REQUEST_REFUSED, struct.pack(">IB", frame.request, frame.reason)
    elif isinstance(frame, Keepalive):
        kind = ControlKind.KEEPALIVE
        fields = struct.pack(">Q", frame.echo) + bytes(KEEPALIVE_PADDING)
    elif isinstance(frame, Pong):
        kind = ControlKind.PONG
        fields = struct.pack(">QH", frame.echo, frame.load) + encode_address(frame.observed)
    elif isinstance(frame, Close):
        kind, fields = ControlKind.CLOSE, struct.pack(">IB", frame.session, frame.reason)
    elif isinstance(frame, PathChallenge):
        kind, fields = ControlKind.PATH_CHALLENGE, frame.nonce
    elif isinstance(frame, PathResponse):
        kind, fields = ControlKind.PATH_RESPONSE, frame.nonce
    elif isinstance(frame, DirectoryQuery):
        kind = ControlKind.DIRECTORY_QUERY
        fields = struct.pack(">IB", frame.request, frame.op) + frame.body
    elif isinstance(frame, DirectoryAnswer):
        kind = ControlKind.DIRECTORY_ANSWER
        fields = struct.pack(">IB", frame.request, frame.status) + frame.body
    else:
        kind, fields = ControlKind.SESSION_ACK, _U32_STRUCT.pack(frame.session)
    return FrameType.CONTROL, bytes((kind,)) + fields


# -- decoding -----------------------------------------------------------------------------------


class _Reader:
    """Reads fields off a buffer; every shortfall is a :class:`FrameError`."""

    __slots__ = ("_data", "_offset")

    def __init__(self, data: bytes, offset: int = 0) -> None:
        self._data = data
        self._offset = offset

    def take(self, size: int) -> bytes:
        end = self._offset + size
        if end > len(self._data):
            raise FrameError(f"frame ends {end - len(self._data)} bytes early")
        chunk = self._data[self._offset : end]
        self._offset = end
        return chunk

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def node_id(self) -> NodeId:
        return NodeId(self.take(NODE_ID_SIZE))

    def reason(self) -> Reason:
        code = self.uint(1)
        try:
            return Reason(code)
        except ValueError:
            raise FrameError(f"unknown reason code {code}") from None

    def address(self) -> Address:
        family = self.uint(1)
        if family == 4:
            ip = str(ipaddress.IPv4Address(self.take(4)))
        elif family == 6:
            ip = str(ipaddress.IPv6Address(self.take(16)))
        else:
            raise FrameError(f"unknown address family {family}")
        return ip, self.uint(2)

    def rest(self) -> bytes:
        chunk = self._data[self._offset :]
        self._offset = len(self._data)
        return chunk

    def end(self) -> None:
        if self._offset != len(self._data):
            raise FrameError(f"{len(self._data) - self._offset} unexpected bytes after the frame")


def decode(data: bytes) -> HandshakeFrame | Sealed:
    """Parse one relay datagram; :class:`FrameError` for anything that is not one.

    Sealed frames come back as :class:`Sealed` (their tag is a link's business).
    """
    data = bytes(data)
    if not data:
        raise FrameError("empty datagram")
    try:
        kind = FrameType(data[0])
    except ValueError:
        raise FrameError(f"first byte {data[0]} is not a relay frame type") from None
    if kind is FrameType.DATA or kind is FrameType.CONTROL:
        return _decode_sealed(kind, data)
    try:
        return _decode_handshake(kind, data)
    except FrameError:
        raise
    except ValueError as exc:  # a field validator
        raise FrameError(f"bad {kind.name} field: {exc}") from None


def _decode_handshake(kind: FrameType, data: bytes) -> HandshakeFrame:
    reader = _Reader(data, 1)
    frame: HandshakeFrame
    if kind is FrameType.HELLO:
        if len(data) != HELLO_SIZE:
            raise FrameError(f"HELLO is {HELLO_SIZE} bytes, not {len(data)}")
        frame = Hello(reader.take(NONCE_SIZE), reader.node_id())
        reader.rest()
    elif kind is FrameType.CHALLENGE:
        frame = Challenge(
            reader.take(NONCE_SIZE), reader.node_id(), reader.take(COOKIE_SIZE), reader.address()
        )
    elif kind is FrameType.REGISTER:
        frame = Register(
            reader.take(NONCE_SIZE),
            reader.node_id(),
            reader.take(COOKIE_SIZE),
            reader.take(KEY_SIZE),
            reader.address(),
            reader.take(SIGNATURE_SIZE),
        )
    elif kind is FrameType.REGISTERED:
        nonce, registration = reader.take(NONCE_SIZE), reader.uint(4)
        if registration == 0:
            raise FrameError("registration 0 is not a registration")
        frame = Registered(
            nonce,
            registration,
            reader.take(KEY_SIZE),
            reader.uint(4),
            reader.address(),
            reader.take(SIGNATURE_SIZE),
        )
    else:
        frame = Refused(reader.take(NONCE_SIZE), reader.reason())
    reader.end()
    return frame


def _decode_sealed(kind: FrameType, data: bytes) -> Sealed:
    minimum = SEALED_HEADER_SIZE + (4 if kind is FrameType.DATA else 1) + TAG_SIZE
    if len(data) < minimum:
        raise FrameError(f"{kind.name} frame of {len(data)} bytes; the minimum is {minimum}")
    _, registration, counter = _SEALED.unpack_from(data)
    return Sealed(kind, registration, counter, data[SEALED_HEADER_SIZE:-TAG_SIZE], data[-TAG_SIZE:])


def decode_body(kind: FrameType, body: bytes) -> SessionFrame:
    """The frame in a sealed frame's body; :class:`FrameError` if malformed."""
    reader = _Reader(body)
    frame: SessionFrame
    if kind is FrameType.DATA:
        session = reader.uint(4)
        if session == 0:
            raise FrameError("DATA on session 0")
        return Data(session, reader.rest())
    if kind is not FrameType.CONTROL:
        raise FrameError(f"{kind.name} is not a sealed frame type")
    code = reader.uint(1)
    try:
        control = ControlKind(code)
    except ValueError:
        raise FrameError(f"unknown control kind {code}") from None
    try:
        if control is ControlKind.RELAY_REQUEST:
            frame = RelayRequest(reader.uint(4), reader.node_id())
        elif control is ControlKind.RELAY_ACCEPTED:
            frame = RelayAccepted(reader.uint(4), reader.uint(4), reader.node_id())
        elif control is ControlKind.REQUEST_REFUSED:
            frame = RequestRefused(reader.uint(4), reader.reason())
        elif control is ControlKind.KEEPALIVE:
            frame = Keepalive(reader.uint(8))
            reader.take(KEEPALIVE_PADDING)
        elif control is ControlKind.PONG:
            frame = Pong(reader.uint(8), reader.uint(2), reader.address())
        elif control is ControlKind.CLOSE:
            frame = Close(reader.uint(4), reader.reason())
        elif control is ControlKind.PATH_CHALLENGE:
            frame = PathChallenge(reader.take(PATH_NONCE_SIZE))
        elif control is ControlKind.PATH_RESPONSE:
            frame = PathResponse(reader.take(PATH_NONCE_SIZE))
        elif control is ControlKind.DIRECTORY_QUERY:
            frame = DirectoryQuery(reader.uint(4), DirectoryOp(reader.uint(1)), reader.rest())
        elif control is ControlKind.DIRECTORY_ANSWER:
            request = reader.uint(4)
            frame = DirectoryAnswer(request, DirectoryStatus(reader.uint(1)), reader.rest())
        else:
            frame = SessionAck(reader.uint(4))
    except FrameError:
        raise
    except ValueError as exc:  # a field out of range (request or session 0, load > 1000)
        raise FrameError(f"bad {control.name} field: {exc}") from None
    reader.end()
    return frame
