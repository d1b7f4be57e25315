"""Answering STUN Binding requests, sans-IO: every decision the observer makes about a datagram.

:func:`answer` takes one datagram, its source and the observer socket it reached, and returns
what to send, from which of the observer's sockets and to where, or why nothing is sent. No
sockets, no clock: the observer actor only moves bytes and counts outcomes.

Decisions, with their grounds:

- **Responses** (RFC 5780 section 6.1) carry XOR-MAPPED-ADDRESS and, for older readers,
  MAPPED-ADDRESS (both the source address); RESPONSE-ORIGIN (the socket the response leaves
  from; left out when the observer listens on a wildcard IP and so cannot know it); with an
  alternate address, OTHER-ADDRESS: the alternate IP with the other port (RFC 5780 table 1 for
  requests to the primary IP; coturn's value for those to the alternate IP, see
  :meth:`ObserverAddresses.other_address`). coturn's ``turnutils_natdiscovery`` reads
  XOR-MAPPED-ADDRESS, takes OTHER-ADDRESS as the sign of an RFC 5780 server and compares
  MAPPED-ADDRESS with XOR-MAPPED-ADDRESS to detect ALGs. FINGERPRINT is added when the request
  had one; SOFTWARE when configured.
- **CHANGE-REQUEST** with an alternate address: the response leaves from the socket with the other
  IP and/or the other port, as asked. Without one, a request that asks for a change gets 420
  listing CHANGE-REQUEST: RFC 5780 section 6.1 says a server without an alternate address MUST
  answer CHANGE-REQUEST with 420, which is how a client learns the server cannot run the
  filtering tests. A CHANGE-REQUEST with neither flag set asks for nothing this observer cannot
  do and is answered normally, as coturn does for STUNTMAN and JSTUN clients, which send an empty
  one with every request.
- **RESPONSE-PORT** (RFC 5780 section 7.5) changes only the destination port. The destination IP
  is always the request's source IP, so a reply reaches only a host the requester could already
  have named as its source (a spoofer picks source IP and port freely anyway). The observer
  charges every reply to the destination IP's rate-limit bucket, whatever the port, and applies
  the same size bound. So RESPONSE-PORT adds no reach and no volume. Port 0 gets 400. PADDING
  together with RESPONSE-PORT gets 400 (RFC 5780 section 6.1).
- **Amplification bound**: a response never takes more bytes on the wire than
  ``max_amplification`` times the request (IP and UDP headers included, 28 bytes for IPv4 and 48
  for IPv6, because a reflection victim's link carries the headers too). With the default factor
  of 3, the smallest request (a bare 20-byte header) gets a full RFC 5780 answer: 68 bytes of
  STUN, 96 wire bytes against 48 (2x) for IPv4; 116 bytes, 164 against 68 (2.4x) for IPv6. (On
  payload alone that is 3.4x and 5.8x, which a payload bound of 3 could only meet by leaving out
  attributes RFC 5780 requires.) When a response would not fit (a long SOFTWARE, a smaller
  factor), optional attributes are left out, least useful first: SOFTWARE, MAPPED-ADDRESS,
  RESPONSE-ORIGIN, OTHER-ADDRESS, FINGERPRINT, PADDING. If XOR-MAPPED-ADDRESS alone does not
  fit, nothing is sent.
- **PADDING** (RFC 5780 section 7.6, a fragmentation test): RFC 5780 asks for a response padded to
  the MTU, which would let a small request draw a large response. Here the response is padded to
  the request's own size instead, so a client that wants MTU-sized responses sends MTU-sized
  requests, and PADDING needs no exception to the bound.
- **Unknown comprehension-required attributes** get 420 with UNKNOWN-ATTRIBUTES (RFC 8489
  section 6.3.1). Requests of other methods get 400 (this observer serves Binding only; a TURN
  client learns that at once instead of timing out). Indications and responses are dropped:
  RFC 8489 never answers them, and answering responses would let two servers loop.
- **RFC 3489 requests** (no magic cookie; legacy NAT-type clients such as Debian's ``stun``)
  get a classic answer (:mod:`macula_nat.wire.classic_stun`): MAPPED-ADDRESS, SOURCE-ADDRESS
  (the answering socket) and, with an alternate address, CHANGED-ADDRESS (the same address
  OTHER-ADDRESS names), CHANGE-REQUEST honoured as above, under the same amplification bound.
  RESPONSE-ADDRESS, which would send the answer to a third party, gets 400; other mandatory
  attributes (USERNAME, MESSAGE-INTEGRITY: shared secrets are not served) get 420. IPv4 only.
- **Malformed datagrams** (not STUN, a bad FINGERPRINT, a source no response can be sent to:
  port 0 or the unspecified IP) are dropped.
"""

from __future__ import annotations

import enum
import functools
import math
import socket
import struct
import zlib
from typing import Final

import attrs

from macula_nat.net.address import Address, normalise_address, optional_address
from macula_nat.wire import classic_stun, stun

__all__ = [
    "DEFAULT_MAX_AMPLIFICATION",
    "Answer",
    "ObserverAddresses",
    "Outcome",
    "answer",
    "wire_size",
]

DEFAULT_MAX_AMPLIFICATION: Final = 3.0
"""Wire bytes a response may take per wire byte of its request."""

_IPV4_OVERHEAD: Final = 28
_IPV6_OVERHEAD: Final = 48
_HEADER: Final = 20
_COOKIE: Final = stun.MAGIC_COOKIE.to_bytes(4, "big")
_FINGERPRINT_XOR: Final = 0x5354554E
_BINDING_SUCCESS: Final = 0x0101
_CHANGE_REQUEST: Final = int(stun.AttributeType.CHANGE_REQUEST)
_MAPPED: Final = int(stun.AttributeType.MAPPED_ADDRESS)
_XOR_MAPPED: Final = int(stun.AttributeType.XOR_MAPPED_ADDRESS)
_RESPONSE_ORIGIN: Final = int(stun.AttributeType.RESPONSE_ORIGIN)
_OTHER_ADDRESS: Final = int(stun.AttributeType.OTHER_ADDRESS)
_SOFTWARE: Final = int(stun.AttributeType.SOFTWARE)
_PADDING: Final = int(stun.AttributeType.PADDING)
_FINGERPRINT: Final = int(stun.AttributeType.FINGERPRINT)
_UNSPECIFIED: Final = frozenset({"0.0.0.0", "::"})
_FINGERPRINT_SIZE: Final = bytes(8)
_PADDING_HEADER: Final = bytes(4)


def wire_size(payload: int, ip: str) -> int:
    """Bytes a UDP datagram of ``payload`` bytes takes on the wire: payload, UDP and IP header."""
    return payload + (_IPV6_OVERHEAD if ":" in ip else _IPV4_OVERHEAD)


class Outcome(enum.Enum):
    """What became of one datagram."""

    ANSWERED = "answered"
    """A Binding success response is sent."""
    BAD_REQUEST = "bad_request"
    """A 400 error response is sent."""
    UNKNOWN_ATTRIBUTE = "unknown_attribute"
    """A 420 error response with UNKNOWN-ATTRIBUTES is sent."""
    MALFORMED = "malformed"
    """Dropped: not a well-formed STUN message, or from a source no response can reach."""
    NOT_A_REQUEST = "not_a_request"
    """Dropped: a well-formed indication or response."""
    AMPLIFICATION_REFUSED = "amplification_refused"
    """Dropped: even the smallest answer would break the amplification bound."""


@attrs.frozen
class Answer:
    """The decision about one datagram: a response to send, or the reason for silence."""

    outcome: Outcome
    response: bytes | None = None
    origin: Address | None = None
    """The observer socket (by its bound address) the response must leave from."""
    destination: Address | None = None
    left_out: tuple[int, ...] = ()
    """Attribute types left out of the response to keep within the amplification bound."""


@attrs.frozen
class ObserverAddresses:
    """The addresses an observer's sockets are bound to: one, or RFC 5780's two IPs x two ports.

    ``primary`` is ``IP1:P1``; ``alternate``, when given, is ``IP2:P2`` and must differ from the
    primary in both IP and port, with the same IP version. The ports must be the bound ones (not
    0); only a single primary may have a wildcard IP.
    """

    primary: Address = attrs.field(converter=normalise_address)
    alternate: Address | None = attrs.field(default=None, converter=optional_address)

    @primary.validator
    def _check_primary(self, _: attrs.Attribute[Address], value: Address) -> None:
        if value[1] == 0:
            raise ValueError(f"primary {value} must have its bound port, not 0")

    @alternate.validator
    def _check_alternate(self, _: attrs.Attribute[Address | None], value: Address | None) -> None:
        if value is None:
            return
        (ip1, port1), (ip2, port2) = self.primary, value
        if port2 == 0:
            raise ValueError(f"alternate {value} must have its bound port, not 0")
        if ip1 in _UNSPECIFIED or ip2 in _UNSPECIFIED:
            raise ValueError("an observer with an alternate address needs concrete IPs")
        if ip1 == ip2 or port1 == port2:
            raise ValueError(
                f"alternate {value} must differ from primary {self.primary} in IP and in port"
            )
        if (":" in ip1) != (":" in ip2):
            raise ValueError(f"primary {self.primary} and alternate {value} differ in IP version")

    @property
    def rfc5780(self) -> bool:
        """True when CHANGE-REQUEST can be honoured and OTHER-ADDRESS reported."""
        return self.alternate is not None

    @functools.cached_property
    def sockets(self) -> tuple[Address, ...]:
        """Every socket address: the primary alone, or IP1:P1, IP1:P2, IP2:P1, IP2:P2."""
        if self.alternate is None:
            return (self.primary,)
        (ip1, port1), (ip2, port2) = self.primary, self.alternate
        return ((ip1, port1), (ip1, port2), (ip2, port1), (ip2, port2))

    def other_address(self, local: Address) -> Address | None:
        """OTHER-ADDRESS for a request that reached ``local``: the alternate IP with the other
        port.

        For a request to the primary IP this is RFC 5780's value (the address a change of IP
        and port answers from). For one to the alternate IP, RFC 5780 section 7.4 would name
        the primary IP; we name the alternate IP, as coturn's server does, because coturn's
        ``turnutils_natdiscovery`` sends test III to the OTHER-ADDRESS of test II's answer: with
        the primary IP there, test III leaves for another IP than test II and an
        address-dependent mapping reads as address-and-port-dependent. RFC 5780's own
        procedure (section 4.3) and our detector read OTHER-ADDRESS from test I's answer only,
        which is unchanged, so both kinds of client classify alike."""
        if self.alternate is None:
            return None
        return self.alternate[0], self._other_port(local)

    def changed_address(self, local: Address) -> Address | None:
        """RFC 3489's CHANGED-ADDRESS for a request that reached ``local``: the other IP with
        the other port, where a change of IP and port answers from."""
        if self.alternate is None:
            return None
        return self._other_ip(local), self._other_port(local)

    def response_socket(self, local: Address, change_ip: bool, change_port: bool) -> Address:
        """The socket that answers a request reaching ``local`` with these CHANGE-REQUEST flags."""
        if not (change_ip or change_port):
            return local
        if self.alternate is None:
            raise ValueError("an observer with one address cannot change IP or port")
        return (
            self._other_ip(local) if change_ip else local[0],
            self._other_port(local) if change_port else local[1],
        )

    def _other_ip(self, local: Address) -> str:
        assert self.alternate is not None
        return self.alternate[0] if local[0] == self.primary[0] else self.primary[0]

    def _other_port(self, local: Address) -> int:
        assert self.alternate is not None
        return self.alternate[1] if local[1] == self.primary[1] else self.primary[1]


def answer(
    data: bytes,
    source: Address,
    local: Address,
    addresses: ObserverAddresses,
    *,
    software: str | None = None,
    max_amplification: float = DEFAULT_MAX_AMPLIFICATION,
) -> Answer:
    """Decide what to do with ``data``, which ``source`` sent to the observer socket ``local``.

    ``source`` and ``local`` are normalised addresses (as endpoints report them), ``local`` one of
    ``addresses.sockets``. Never raises for any ``data``; raises ValueError for a ``local`` that
    is not one of the observer's sockets, or a ``max_amplification`` below 1.
    """
    if not max_amplification >= 1.0 or math.isinf(max_amplification):
        raise ValueError(f"max_amplification must be a finite factor >= 1, not {max_amplification}")
    if local not in addresses.sockets:
        raise ValueError(f"{local} is not one of the observer's sockets {addresses.sockets}")
    overhead = wire_size(0, source[0])
    limit = math.floor(max_amplification * (len(data) + overhead)) - overhead
    reachable = source[1] != 0 and source[0] not in _UNSPECIFIED
    plain = _plain_binding_request(data)
    if plain is not None:
        if not reachable:
            return _MALFORMED
        transaction_id, fingerprint = plain
        return _success(
            transaction_id, fingerprint, False, data, source, local, local, addresses, limit,
            software, source,
        )  # fmt: skip
    if data[4:8] != _COOKIE:
        classic = classic_stun.parse_classic_request(data)
        if classic is None or not reachable or ":" in source[0]:
            return _MALFORMED
        return _classic(classic, source, local, addresses, limit)
    try:
        request = stun.decode(data)
    except stun.StunParseError:
        return _MALFORMED
    if request.message_class != stun.MessageClass.REQUEST:
        return _NOT_A_REQUEST
    if not reachable:
        return _MALFORMED
    if request.method != stun.BINDING:
        reason = "Only Binding is served"
        return _error_reply(request, source, local, limit, software, 400, reason, ())
    change = request.change_request
    wants_change = change is not None and (change.change_ip or change.change_port)
    unknown = request.unknown_required
    if wants_change and not addresses.rfc5780:
        unknown = (*unknown, _CHANGE_REQUEST)
        reason = "CHANGE-REQUEST needs an observer with an alternate address"
        return _error_reply(request, source, local, limit, software, 420, reason, unknown)
    if unknown:
        return _error_reply(request, source, local, limit, software, 420, None, unknown)
    if request.padding is not None and request.response_port is not None:
        reason = "PADDING and RESPONSE-PORT cannot be combined"
        return _error_reply(request, source, local, limit, software, 400, reason, ())
    if request.response_port == 0:
        return _error_reply(request, source, local, limit, software, 400, "RESPONSE-PORT 0", ())
    destination = (source[0], request.response_port or source[1])
    if change is not None and wants_change:
        origin = addresses.response_socket(local, change.change_ip, change.change_port)
    else:
        origin = local
    return _success(
        request.transaction_id, request.fingerprint, request.padding is not None, data, source,
        origin, local, addresses, limit, software, destination,
    )  # fmt: skip


_BARE_REQUEST: Final = struct.pack("!HHI", 0x0001, 0, stun.MAGIC_COOKIE)
_FINGERPRINTED_REQUEST: Final = struct.pack("!HHI", 0x0001, 8, stun.MAGIC_COOKIE)
_FINGERPRINT_HEADER: Final = struct.pack("!HH", 0x8028, 4)


def _plain_binding_request(data: bytes) -> tuple[bytes, bool] | None:
    """The two commonest requests, recognised without the codec (which costs as much again as
    the rest of the answer): a Binding request with no attribute, or with FINGERPRINT alone.

    Returns the transaction id and whether FINGERPRINT is there; None for anything else, which
    the codec then parses (so a bad FINGERPRINT still ends up malformed).
    """
    size = len(data)
    if size == 20 and data[:8] == _BARE_REQUEST:
        return data[8:20], False
    if (
        size == 28
        and data[:8] == _FINGERPRINTED_REQUEST
        and data[20:24] == _FINGERPRINT_HEADER
        and int.from_bytes(data[24:28], "big") == zlib.crc32(data[:20]) ^ _FINGERPRINT_XOR
    ):
        return data[8:20], True
    return None


_MALFORMED: Final = Answer(Outcome.MALFORMED)
_NOT_A_REQUEST: Final = Answer(Outcome.NOT_A_REQUEST)
_REFUSED: Final = Answer(Outcome.AMPLIFICATION_REFUSED)


def _success(
    transaction_id: bytes,
    fingerprint: bool,
    padded: bool,
    data: bytes,
    source: Address,
    origin: Address,
    local: Address,
    addresses: ObserverAddresses,
    limit: int,
    software: str | None,
    destination: Address,
) -> Answer:
    """A Binding success response within ``limit`` bytes, encoded here for speed.

    Byte for byte what ``stun.Message(...).encode()`` gives for the same attributes (the tests
    hold it to that), at a fraction of the cost: this is the observer's hot path.
    """
    mapped = _address_value(source)
    xor_mapped = _tlv(_XOR_MAPPED, _xor(mapped, transaction_id))
    # Optional attributes, encoded, in the order they give way when the response is too large.
    # FINGERPRINT and PADDING stand in by their size; their values are computed last.
    optional = {
        _SOFTWARE: b"" if software is None else _software_tlv(software),
        _MAPPED: _tlv(_MAPPED, mapped),
        _RESPONSE_ORIGIN: b"" if origin[0] in _UNSPECIFIED else _tlv_of(_RESPONSE_ORIGIN, origin),
        _OTHER_ADDRESS: _other_address_tlv(addresses, local),
        _FINGERPRINT: _FINGERPRINT_SIZE if fingerprint else b"",
        _PADDING: _PADDING_HEADER if padded else b"",
    }
    size = _HEADER + len(xor_mapped) + sum(map(len, optional.values()))
    left_out: tuple[int, ...] = ()
    if size > limit:
        size, left_out = _trim(optional, size, limit)
        if size > limit:
            return _REFUSED
    padding = optional[_PADDING]
    if padding:
        padding = _tlv(_PADDING, bytes(max(0, len(data) - size)))
    attributes = b"".join(
        (
            optional[_MAPPED],
            xor_mapped,
            optional[_RESPONSE_ORIGIN],
            optional[_OTHER_ADDRESS],
            optional[_SOFTWARE],
            padding,
        )
    )
    response = _message(transaction_id, attributes, bool(optional[_FINGERPRINT]))
    return Answer(Outcome.ANSWERED, response, origin, destination, left_out)


def _classic(
    request: classic_stun.ClassicRequest,
    source: Address,
    local: Address,
    addresses: ObserverAddresses,
    limit: int,
) -> Answer:
    """The answer to an RFC 3489 request (see the module docstring)."""
    transaction_id = request.transaction_id
    if request.response_address:
        reason = "RESPONSE-ADDRESS is not honoured: answers go to the request's source"
        reply = classic_stun.classic_error_response(transaction_id, 400, reason)
        return _classic_reply(Outcome.BAD_REQUEST, reply, local, source, limit)
    unknown = request.unknown
    wants_change = request.change_ip or request.change_port
    if wants_change and not addresses.rfc5780:
        unknown = (*unknown, classic_stun.CHANGE_REQUEST)
    if unknown:
        reply = classic_stun.classic_error_response(
            transaction_id, 420, "Unknown attribute", unknown
        )
        return _classic_reply(Outcome.UNKNOWN_ATTRIBUTE, reply, local, source, limit)
    origin = addresses.response_socket(local, request.change_ip, request.change_port)
    reply = classic_stun.classic_binding_response(
        transaction_id,
        source,
        None if origin[0] in _UNSPECIFIED else origin,
        addresses.changed_address(local),
    )
    return _classic_reply(Outcome.ANSWERED, reply, origin, source, limit)


def _classic_reply(
    outcome: Outcome, reply: bytes, origin: Address, destination: Address, limit: int
) -> Answer:
    if len(reply) > limit:
        return _REFUSED
    return Answer(outcome, reply, origin, destination)


def _trim(optional: dict[int, bytes], size: int, limit: int) -> tuple[int, tuple[int, ...]]:
    """Empty optional attributes in order until ``size`` fits ``limit``; the size, what went."""
    left_out = []
    for kind, encoded in optional.items():
        if size <= limit:
            break
        if encoded:
            optional[kind] = b""
            size -= len(encoded)
            left_out.append(kind)
    return size, tuple(left_out)


def _other_address_tlv(addresses: ObserverAddresses, local: Address) -> bytes:
    other = addresses.other_address(local)
    return b"" if other is None else _tlv_of(_OTHER_ADDRESS, other)


@functools.lru_cache(maxsize=64)
def _tlv_of(kind: int, address: Address) -> bytes:
    """An attribute holding one of the observer's own addresses (a handful: cached)."""
    return _tlv(kind, _address_value(address))


@functools.lru_cache(maxsize=8)
def _software_tlv(software: str) -> bytes:
    value = software.encode("utf-8")
    if len(value) > stun.MAX_TEXT_SIZE:
        raise ValueError(f"SOFTWARE is {len(value)} bytes of UTF-8, at most {stun.MAX_TEXT_SIZE}")
    return _tlv(_SOFTWARE, value)


def _tlv(kind: int, value: bytes) -> bytes:
    """One attribute: type, length, value, zero padding to a multiple of 4."""
    return struct.pack("!HH", kind, len(value)) + value + bytes(-len(value) % 4)


def _address_value(address: Address) -> bytes:
    ip, port = address
    if ":" in ip:
        return struct.pack("!BBH", 0, 2, port) + socket.inet_pton(socket.AF_INET6, ip)
    return struct.pack("!BBH", 0, 1, port) + socket.inet_aton(ip)


def _xor(value: bytes, transaction_id: bytes) -> bytes:
    """XOR-MAPPED-ADDRESS encoding: port and IP masked with the cookie and transaction id."""
    mask = (bytes(2) + _COOKIE[:2] + _COOKIE + transaction_id)[: len(value)]
    masked = int.from_bytes(value, "big") ^ int.from_bytes(mask, "big")
    return masked.to_bytes(len(value), "big")


def _message(transaction_id: bytes, attributes: bytes, fingerprint: bool) -> bytes:
    length = len(attributes) + (8 if fingerprint else 0)
    message = struct.pack("!HHI", _BINDING_SUCCESS, length, stun.MAGIC_COOKIE)
    message += transaction_id + attributes
    if fingerprint:
        crc = zlib.crc32(message) ^ _FINGERPRINT_XOR
        message += struct.pack("!HHI", _FINGERPRINT, 4, crc)
    return message


def _error_reply(
    request: stun.Message,
    source: Address,
    local: Address,
    limit: int,
    software: str | None,
    code: int,
    reason: str | None,
    unknown: tuple[int, ...],
) -> Answer:
    """An error response within ``limit`` bytes (SOFTWARE, then the reason phrase, give way)."""
    outcome = Outcome.UNKNOWN_ATTRIBUTE if code == 420 else Outcome.BAD_REQUEST
    attempts: tuple[tuple[str | None, str | None, tuple[int, ...]], ...] = (
        (software, reason, ()),
        (None, reason, (_SOFTWARE,) if software is not None else ()),
        (None, "", (_SOFTWARE,) if software is not None else ()),
    )
    for attempt_software, attempt_reason, left_out in attempts:
        response = stun.error_response(
            request,
            code,
            attempt_reason,
            unknown_attributes=unknown or None,
            software=attempt_software,
            fingerprint=request.fingerprint,
        ).encode()
        if len(response) <= limit:
            return Answer(outcome, response, local, source, left_out)
    return _REFUSED
