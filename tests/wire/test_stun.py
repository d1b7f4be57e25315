"""The STUN codec: RFC 5769 vectors, known encodings, validation and hypothesis properties."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from macula_nat.wire.stun import (
    BINDING,
    MAGIC_COOKIE,
    AttributeType,
    ChangeRequest,
    ErrorCode,
    Message,
    MessageClass,
    RawAttribute,
    StunParseError,
    binding_request,
    binding_success,
    decode,
    error_response,
    is_stun,
    new_transaction_id,
    unknown_attributes_response,
)


def _hex(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


# RFC 5769 section 2 (Copyright (c) 2010 IETF Trust and the persons identified as the document
# authors; Simplified BSD License). SOFTWARE and USERNAME are padded with spaces on purpose.
RFC5769_TRANSACTION_ID = _hex("b7 e7 a7 01 bc 34 d6 86 fa 87 df ae")
RFC5769_REQUEST = _hex("""
    00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
    00 24 00 04 6e 00 01 ff
    80 29 00 08 93 2f f9 b1 51 26 3b 36
    00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
    00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
    80 28 00 04 e5 7a 3b cf
""")
RFC5769_IPV4_RESPONSE = _hex("""
    01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
    00 20 00 08 00 01 a1 47 e1 12 a6 43
    00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
    80 28 00 04 c0 7d 4c 96
""")
RFC5769_IPV6_RESPONSE = _hex("""
    01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
    00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
    00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
    80 28 00 04 c8 fb 0b 4c
""")
RFC5769_VECTORS = [RFC5769_REQUEST, RFC5769_IPV4_RESPONSE, RFC5769_IPV6_RESPONSE]

TID = bytes(range(1, 13))


def frame(message_type: int, attributes: list[tuple[int, bytes]], tid: bytes = TID) -> bytes:
    """Hand-built message bytes (no FINGERPRINT), independent of the encoder under test."""
    body = b"".join(
        struct.pack("!HH", kind, len(value)) + value + bytes(-len(value) % 4)
        for kind, value in attributes
    )
    return struct.pack("!HHI", message_type, len(body), MAGIC_COOKIE) + tid + body


def fingerprint_then(trailing: bytes) -> bytes:
    """A request whose valid FINGERPRINT is followed by `trailing` attribute bytes."""
    header = struct.pack("!HHI", 0x0001, 8 + len(trailing), MAGIC_COOKIE) + TID
    crc = zlib.crc32(header) ^ 0x5354554E
    return header + struct.pack("!HHI", 0x8028, 4, crc) + trailing


# --- RFC 5769 test vectors -------------------------------------------------------------------


def test_rfc5769_sample_request() -> None:
    message = decode(RFC5769_REQUEST)
    assert message.message_class == MessageClass.REQUEST
    assert message.method == BINDING
    assert message.transaction_id == RFC5769_TRANSACTION_ID
    assert message.software == "STUN test client"
    assert message.fingerprint
    assert message.raw_attributes == (
        RawAttribute(0x0024, _hex("6e 00 01 ff")),  # PRIORITY (ICE)
        RawAttribute(0x8029, _hex("93 2f f9 b1 51 26 3b 36")),  # ICE-CONTROLLED
        RawAttribute(AttributeType.USERNAME, b"evtj:h6vY"),
        RawAttribute(
            AttributeType.MESSAGE_INTEGRITY,
            _hex("9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2"),
        ),
    )
    # USERNAME and MESSAGE-INTEGRITY are RFC 8489's own; PRIORITY belongs to ICE.
    assert message.unknown_required == (0x0024,)


def test_rfc5769_sample_ipv4_response() -> None:
    message = decode(RFC5769_IPV4_RESPONSE)
    assert message.message_class == MessageClass.SUCCESS
    assert message.method == BINDING
    assert message.transaction_id == RFC5769_TRANSACTION_ID
    assert message.xor_mapped_address == ("192.0.2.1", 32853)
    assert message.software == "test vector"
    assert message.fingerprint
    assert [a.type for a in message.raw_attributes] == [AttributeType.MESSAGE_INTEGRITY]
    assert message.unknown_required == ()


def test_rfc5769_sample_ipv6_response() -> None:
    message = decode(RFC5769_IPV6_RESPONSE)
    assert message.message_class == MessageClass.SUCCESS
    assert message.xor_mapped_address == ("2001:db8:1234:5678:11:2233:4455:6677", 32853)
    assert message.software == "test vector"
    assert message.fingerprint


@pytest.mark.parametrize("vector", RFC5769_VECTORS)
def test_rfc5769_vectors_survive_a_round_trip(vector: bytes) -> None:
    message = decode(vector)
    assert decode(message.encode()) == message


@pytest.mark.parametrize("vector", RFC5769_VECTORS)
def test_rfc5769_vector_with_wrong_fingerprint_is_rejected(vector: bytes) -> None:
    corrupted = vector[:-1] + bytes([vector[-1] ^ 0x01])
    with pytest.raises(StunParseError, match="FINGERPRINT"):
        decode(corrupted)


# --- known encodings -------------------------------------------------------------------------


def test_xor_mapped_address_encodes_as_in_rfc5769() -> None:
    for mapped, value in [
        (("192.0.2.1", 32853), "00 01 a1 47 e1 12 a6 43"),
        (
            ("2001:db8:1234:5678:11:2233:4455:6677", 32853),
            "00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9",
        ),
    ]:
        request = binding_request(RFC5769_TRANSACTION_ID)
        response = binding_success(request, mapped, fingerprint=False)
        expected = frame(0x0101, [(0x0020, _hex(value))], RFC5769_TRANSACTION_ID)
        assert response.encode() == expected


def test_plain_binding_request_bytes() -> None:
    assert binding_request(TID, fingerprint=False).encode() == _hex("0001 0000 2112a442") + TID


def test_fingerprint_is_last_and_covers_the_final_length() -> None:
    data = binding_request(TID).encode()
    assert data[2:4] == (8).to_bytes(2, "big")
    assert data[20:24] == _hex("8028 0004")
    assert decode(data).fingerprint


@pytest.mark.parametrize(
    ("method", "message_class", "message_type"),
    [
        (0x001, MessageClass.REQUEST, 0x0001),
        (0x001, MessageClass.INDICATION, 0x0011),
        (0x001, MessageClass.SUCCESS, 0x0101),
        (0x001, MessageClass.ERROR, 0x0111),
        (0x003, MessageClass.SUCCESS, 0x0103),  # TURN Allocate
        (0x006, MessageClass.INDICATION, 0x0016),  # TURN Send
        (0x009, MessageClass.ERROR, 0x0119),  # TURN ChannelBind
        (0x080, MessageClass.REQUEST, 0x0200),
        (0xFFF, MessageClass.ERROR, 0x3FFF),
    ],
)
def test_message_type_interleaves_method_and_class(
    method: int, message_class: MessageClass, message_type: int
) -> None:
    message = Message(
        message_class=message_class, transaction_id=TID, method=method, fingerprint=False
    )
    data = message.encode()
    assert data[0:2] == message_type.to_bytes(2, "big")
    assert decode(data) == message


def test_change_request_flags_on_the_wire() -> None:
    for change_ip, change_port, flags in [
        (True, True, 0x06),
        (True, False, 0x04),
        (False, True, 0x02),
    ]:
        request = binding_request(
            TID, change_ip=change_ip, change_port=change_port, fingerprint=False
        )
        assert request.encode() == frame(0x0001, [(0x0003, flags.to_bytes(4, "big"))])
        assert decode(request.encode()).change_request == ChangeRequest(change_ip, change_port)
    assert binding_request(TID).change_request is None


def test_rfc5780_attributes_on_the_wire() -> None:
    request = binding_request(TID, response_port=3479, padding=b"abcde", fingerprint=False)
    assert request.encode() == frame(0x0001, [(0x0027, _hex("0d97 0000")), (0x0026, b"abcde")])
    response = binding_success(
        request,
        ("203.0.113.5", 40000),
        response_origin=("198.51.100.1", 3478),
        other_address=("2001:db8::2", 3479),
        fingerprint=False,
    )
    decoded = decode(response.encode())
    assert decoded.response_origin == ("198.51.100.1", 3478)
    assert decoded.other_address == ("2001:db8::2", 3479)
    assert response.encode() == frame(
        0x0101,
        [
            (0x0020, _hex("0001 bd52 ea12 d547")),
            (0x802B, _hex("0001 0d96 c6336401")),
            (0x802C, _hex("0002 0d97 20010db8000000000000000000000002")),
        ],
    )


def test_error_code_on_the_wire() -> None:
    response = error_response(binding_request(TID), 420, fingerprint=False)
    assert response.encode() == frame(0x0111, [(0x0009, _hex("0000 04 14") + b"Unknown Attribute")])


# --- decoding rules --------------------------------------------------------------------------


def test_unknown_attributes_are_kept_and_required_ones_reported() -> None:
    data = frame(
        0x0001,
        [(0x7FFF, b"req"), (0x8123, b"optional"), (0x0006, b"user"), (0x7FFF, b"again")],
    )
    request = decode(data)
    assert request.unknown_required == (0x7FFF,)
    assert RawAttribute(0x8123, b"optional") in request.raw_attributes
    assert decode(request.encode()) == request

    response = decode(unknown_attributes_response(request, software="macula").encode())
    assert response.message_class == MessageClass.ERROR
    assert response.method == request.method
    assert response.transaction_id == request.transaction_id
    assert response.error == ErrorCode(420, "Unknown Attribute")
    assert response.unknown_attributes == (0x7FFF,)
    assert response.software == "macula"


def test_unknown_attributes_response_needs_something_unknown() -> None:
    with pytest.raises(ValueError, match="no unknown"):
        unknown_attributes_response(binding_request())


def test_first_occurrence_of_a_repeated_attribute_wins() -> None:
    data = frame(0x0001, [(0x8022, b"first"), (0x8022, b"second")])
    assert decode(data).software == "first"


def test_attributes_after_message_integrity_are_ignored() -> None:
    integrity = bytes(20)
    data = frame(
        0x0101,
        [(0x0008, integrity), (0x8022, b"forged"), (0x9999, b"x"), (0x001C, bytes(32))],
    )
    message = decode(data)
    assert message.software is None
    assert message.raw_attributes == (
        RawAttribute(AttributeType.MESSAGE_INTEGRITY, integrity),
        RawAttribute(AttributeType.MESSAGE_INTEGRITY_SHA256, bytes(32)),
    )


def test_padding_bytes_need_not_be_zero() -> None:
    data = bytearray(frame(0x0001, [(0x8022, b"abc")]))
    data[-1] = 0xFF
    assert decode(bytes(data)).software == "abc"


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "shorter than"),
        (RFC5769_REQUEST[:19], "shorter than"),
        (b"\x40" + RFC5769_REQUEST[1:], "two zero bits"),
        (RFC5769_REQUEST[:4] + b"\0\0\0\0" + RFC5769_REQUEST[8:], "magic cookie"),
        (RFC5769_REQUEST + b"\0\0\0\0", "length field says"),
        (frame(0x0001, [])[:3] + b"\x02" + frame(0x0001, [])[4:] + b"\0\0", "multiple of 4"),
        (frame(0x0001, [(0x0001, _hex("0003 0001 01020304"))]), "address family"),
        (frame(0x0001, [(0x0020, _hex("0001 0001 010203"))]), "needs 8"),
        (frame(0x0001, [(0x802B, _hex("0001"))]), "needs at least 8"),
        (frame(0x0001, [(0x0009, _hex("0000"))]), "at least 4 needed"),
        (frame(0x0001, [(0x0020, _hex("0002 0001 01020304"))]), "needs 20"),
        (frame(0x0001, [(0x0009, _hex("0000 02 00"))]), "outside 300..699"),
        (frame(0x0001, [(0x0009, _hex("0000 04 64"))]), "above 99"),
        (frame(0x0001, [(0x000A, _hex("0001 02"))]), "odd length"),
        (frame(0x0001, [(0x0003, _hex("0006"))]), "CHANGE_REQUEST"),
        (frame(0x0001, [(0x0027, _hex("0d97"))]), "RESPONSE_PORT"),
        (frame(0x0001, [(0x8022, b"\xff\xfe")]), "SOFTWARE"),
        (frame(0x0001, [(0x8022, b"x" * 764)]), "763"),
        (frame(0x0001, [(0x8028, b"abc")]), "FINGERPRINT is 3 bytes"),
        (fingerprint_then(_hex("8022 0000")), "follows FINGERPRINT"),
    ],
)
def test_malformed_messages_are_rejected_with_a_reason(data: bytes, match: str) -> None:
    with pytest.raises(StunParseError, match=match):
        decode(data)


def test_overrunning_attribute_is_rejected() -> None:
    data = bytearray(frame(0x0001, [(0x8022, b"abcd")]))
    data[22:24] = (9).to_bytes(2, "big")
    with pytest.raises(StunParseError, match="overruns"):
        decode(bytes(data))


# --- is_stun ---------------------------------------------------------------------------------


def test_is_stun_demultiplexes() -> None:
    assert is_stun(binding_request().encode())
    assert all(is_stun(vector) for vector in RFC5769_VECTORS)
    quic_long_header = bytes([0xC3]) + RFC5769_REQUEST[1:]
    assert not is_stun(quic_long_header)
    assert not is_stun(b"d1:ad2:id20:")  # bencode, first byte 100
    assert not is_stun(RFC5769_REQUEST[:19])
    assert not is_stun(RFC5769_REQUEST[:4] + b"\x21\x12\xa4\x43" + RFC5769_REQUEST[8:])
    assert not is_stun(RFC5769_REQUEST[:-4])


# --- construction and helpers ----------------------------------------------------------------


def test_addresses_are_normalised() -> None:
    message = binding_success(binding_request(), ("2001:DB8:0::0:1", 80))
    assert message.xor_mapped_address == ("2001:db8::1", 80)


@pytest.mark.parametrize(
    ("address", "error"),
    [
        (("192.0.2.1", 65536), "outside 0..65535"),
        (("192.0.2.1", -1), "outside 0..65535"),
        (("999.0.2.1", 1), "not an IPv4 or IPv6 address"),
        (("example.com", 1), "not an IPv4 or IPv6 address"),
        (("fe80::1%eth0", 1), "scope id"),
    ],
)
def test_bad_addresses_are_rejected(address: tuple[str, int], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        binding_success(binding_request(), address)


def test_values_are_validated_at_construction() -> None:
    with pytest.raises(ValueError, match="12 bytes"):
        binding_request(b"short")
    with pytest.raises(ValueError, match="12 bits"):
        Message(message_class=MessageClass.REQUEST, transaction_id=TID, method=0x1000)
    with pytest.raises(ValueError, match=r"outside 0\.\.65535"):
        binding_request(response_port=65536)
    with pytest.raises(ValueError, match="SOFTWARE is 764 bytes"):
        binding_request(software="é" * 382)
    binding_request(software="é" * 381 + "x")  # 763 bytes: the limit itself is fine
    with pytest.raises(ValueError, match="reason phrase is 764 bytes"):
        ErrorCode(400, "x" * 764)
    with pytest.raises(ValueError, match=r"outside 300\.\.699"):
        ErrorCode(700)
    with pytest.raises(ValueError, match="not encodable"):
        ErrorCode(400, "\ud800")
    with pytest.raises(ValueError, match="typed field"):
        RawAttribute(AttributeType.XOR_MAPPED_ADDRESS, b"")
    with pytest.raises(ValueError, match="typed field"):
        RawAttribute(AttributeType.FINGERPRINT, bytes(4))
    with pytest.raises(ValueError, match="at most one MESSAGE_INTEGRITY"):
        Message(
            message_class=MessageClass.REQUEST,
            transaction_id=TID,
            raw_attributes=[RawAttribute(8, bytes(20)), RawAttribute(8, bytes(20))],
        )
    with pytest.raises(ValueError, match="at most 65528"):
        binding_request(padding=bytes(65529))


def test_attribute_types_must_fit_16_bits() -> None:
    with pytest.raises(ValueError, match=r"outside 0\.\.0xFFFF"):
        RawAttribute(0x10000, b"")
    with pytest.raises(ValueError, match=r"outside 0\.\.0xFFFF"):
        error_response(binding_request(), 420, unknown_attributes=[0x10000])


def test_wrong_types_are_refused() -> None:
    request = binding_request()
    bad_addresses: list[object] = [["192.0.2.1", 1], (b"192.0.2.1", 1), ("192.0.2.1", "1")]
    for address in bad_addresses:
        with pytest.raises(TypeError):
            binding_success(request, address)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be an int"):
        Message(message_class=0, transaction_id=TID, method=True)
    with pytest.raises(TypeError, match="must be an int"):
        ErrorCode(400.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be a str"):
        binding_request(software=b"bytes")  # type: ignore[arg-type]


def test_oversize_message_is_refused_at_encode() -> None:
    message = binding_request(padding=bytes(65521))
    with pytest.raises(ValueError, match="at most 65532"):
        message.encode()
    largest = binding_request(padding=bytes(65520), fingerprint=True)
    assert len(largest.encode()) == 20 + 65532
    assert decode(largest.encode()) == largest


def test_integrity_attributes_are_kept_last() -> None:
    integrity = RawAttribute(AttributeType.MESSAGE_INTEGRITY, bytes(20))
    other = RawAttribute(0x9000, b"x")
    message = Message(
        message_class=MessageClass.REQUEST, transaction_id=TID, raw_attributes=[integrity, other]
    )
    assert message.raw_attributes == (other, integrity)


def test_responses_answer_requests_only() -> None:
    request = binding_request()
    success = binding_success(request, ("192.0.2.1", 1))
    assert success.transaction_id == request.transaction_id
    assert success.message_class == MessageClass.SUCCESS
    with pytest.raises(ValueError, match="only requests"):
        binding_success(success, ("192.0.2.1", 1))
    with pytest.raises(ValueError, match="only requests"):
        error_response(success, 400)
    other_method = Message(message_class=MessageClass.REQUEST, transaction_id=TID, method=3)
    with pytest.raises(ValueError, match="not Binding"):
        binding_success(other_method, ("192.0.2.1", 1))
    assert error_response(other_method, 400).method == 3


def test_error_response_reason_phrases() -> None:
    request = binding_request()
    assert error_response(request, 400).error == ErrorCode(400, "Bad Request")
    assert error_response(request, 599, "Custom").error == ErrorCode(599, "Custom")
    with pytest.raises(ValueError, match="no standard reason phrase"):
        error_response(request, 599)


def test_transaction_ids_are_fresh() -> None:
    ids = {new_transaction_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(len(i) == 12 for i in ids)
    assert binding_request().transaction_id != binding_request().transaction_id


# --- properties ------------------------------------------------------------------------------

_TYPED_TYPES = {
    AttributeType.MAPPED_ADDRESS,
    AttributeType.XOR_MAPPED_ADDRESS,
    AttributeType.RESPONSE_ORIGIN,
    AttributeType.OTHER_ADDRESS,
    AttributeType.ERROR_CODE,
    AttributeType.UNKNOWN_ATTRIBUTES,
    AttributeType.CHANGE_REQUEST,
    AttributeType.RESPONSE_PORT,
    AttributeType.SOFTWARE,
    AttributeType.PADDING,
    AttributeType.FINGERPRINT,
}
_INTEGRITY = {AttributeType.MESSAGE_INTEGRITY, AttributeType.MESSAGE_INTEGRITY_SHA256}

addresses = st.tuples(
    st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str),
    st.integers(0, 0xFFFF),
)
raw_attributes = st.lists(
    st.builds(
        RawAttribute,
        st.one_of(
            st.sampled_from(sorted(set(AttributeType) - _TYPED_TYPES)),
            st.integers(0, 0xFFFF).filter(lambda t: t not in _TYPED_TYPES),
        ),
        st.binary(max_size=24),
    ),
    max_size=5,
).filter(lambda attrs: all(sum(a.type == t for a in attrs) <= 1 for t in _INTEGRITY))
texts = st.text(max_size=20)

messages = st.builds(
    Message,
    message_class=st.sampled_from(MessageClass),
    transaction_id=st.binary(min_size=12, max_size=12),
    method=st.integers(0, 0xFFF),
    mapped_address=st.none() | addresses,
    xor_mapped_address=st.none() | addresses,
    response_origin=st.none() | addresses,
    other_address=st.none() | addresses,
    error=st.none() | st.builds(ErrorCode, st.integers(300, 699), texts),
    unknown_attributes=st.none() | st.lists(st.integers(0, 0xFFFF), max_size=5).map(tuple),
    change_request=st.none() | st.builds(ChangeRequest, st.booleans(), st.booleans()),
    response_port=st.none() | st.integers(0, 0xFFFF),
    software=st.none() | texts,
    padding=st.none() | st.binary(max_size=24),
    raw_attributes=raw_attributes,
    fingerprint=st.booleans(),
)

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(messages)
def test_round_trip(message: Message) -> None:
    data = message.encode()
    assert is_stun(data)
    assert decode(data) == message
    assert decode(data).encode() == data


def _decodes_or_parse_error(data: bytes) -> None:
    try:
        message = decode(data)
    except StunParseError:
        return
    assert is_stun(data)  # the pre-check never turns away a message decode accepts
    assert decode(message.encode()) == message


@FAST
@given(st.binary(max_size=120))
@example(b"")
def test_arbitrary_bytes_decode_or_raise_parse_error(data: bytes) -> None:
    _decodes_or_parse_error(data)


@FAST
@given(st.integers(0, 0x3FFF), st.binary(max_size=120))
def test_arbitrary_attribute_sections_decode_or_raise_parse_error(
    message_type: int, body: bytes
) -> None:
    body += bytes(-len(body) % 4)
    data = struct.pack("!HHI", message_type, len(body), MAGIC_COOKIE) + TID + body
    _decodes_or_parse_error(data)


@FAST
@given(messages, st.data())
def test_mutated_messages_decode_or_raise_parse_error(
    message: Message, data: st.DataObject
) -> None:
    wire = bytearray(message.encode())
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(wire)))
        action = data.draw(st.sampled_from(["replace", "insert", "delete"]))
        if action == "replace" and position < len(wire):
            wire[position] = data.draw(st.integers(0, 255))
        elif action == "insert":
            wire[position:position] = data.draw(st.binary(min_size=1, max_size=8))
        else:
            del wire[position : position + data.draw(st.integers(1, 8))]
    if data.draw(st.booleans()) and len(wire) >= 20:
        # Repair the length field so the mutation reaches the attribute parser.
        wire[2:4] = ((len(wire) - 20) & 0xFFFF).to_bytes(2, "big")
    _decodes_or_parse_error(bytes(wire))


@FAST
@given(messages.filter(lambda m: m.fingerprint), st.data())
def test_a_flipped_bit_never_passes_as_fingerprinted(message: Message, data: st.DataObject) -> None:
    wire = bytearray(message.encode())
    bit = data.draw(st.integers(0, len(wire) * 8 - 1))
    wire[bit // 8] ^= 1 << (bit % 8)
    try:
        corrupted = decode(bytes(wire))
    except StunParseError:
        return
    # Only a flip that hides the FINGERPRINT (its type, or a length that swallows it) decodes.
    assert not corrupted.fingerprint
