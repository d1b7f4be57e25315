"""The observer's answering logic, without sockets: RFC 5780 choices, amplification, robustness."""

from __future__ import annotations

import struct
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from macula_nat.nat import binding
from macula_nat.nat.binding import (
    DEFAULT_MAX_AMPLIFICATION,
    Answer,
    ObserverAddresses,
    Outcome,
    answer,
    wire_size,
)
from macula_nat.net.address import Address
from macula_nat.wire import stun
from macula_nat.wire.stun import AttributeType, ChangeRequest, Message, MessageClass, RawAttribute

FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

FULL = ObserverAddresses(("198.51.100.10", 3478), ("198.51.100.11", 3479))
SINGLE = ObserverAddresses(("198.51.100.10", 3478))
FULL_V6 = ObserverAddresses(("2001:db8::10", 3478), ("2001:db8::11", 3479))
CLIENT: Address = ("203.0.113.7", 40000)
CLIENT_V6: Address = ("2001:db8:1::7", 40000)

UNKNOWN_REQUIRED = 0x7F01
UNKNOWN_OPTIONAL = 0xC001


def request(**fields: Any) -> Message:
    fields.setdefault("message_class", MessageClass.REQUEST)
    fields.setdefault("transaction_id", stun.new_transaction_id())
    return Message(**fields)


def ask(
    message: Message | bytes,
    source: Address = CLIENT,
    local: Address = FULL.primary,
    addresses: ObserverAddresses = FULL,
    **options: Any,
) -> Answer:
    data = message.encode() if isinstance(message, Message) else message
    return answer(data, source, local, addresses, **options)


def response_of(result: Answer) -> Message:
    assert result.response is not None
    return stun.decode(result.response)


def within_bound(data: bytes, result: Answer, ip: str, factor: float) -> bool:
    if result.response is None:
        return True
    return wire_size(len(result.response), ip) <= factor * wire_size(len(data), ip)


# -- plain Binding ------------------------------------------------------------------------------


def test_a_binding_request_gets_both_mapped_addresses_origin_and_other_address() -> None:
    message = stun.binding_request()
    result = ask(message)

    assert result.outcome is Outcome.ANSWERED
    assert result.origin == FULL.primary
    assert result.destination == CLIENT
    assert result.left_out == ()
    response = response_of(result)
    assert response.message_class is MessageClass.SUCCESS
    assert response.method == stun.BINDING
    assert response.transaction_id == message.transaction_id
    assert response.xor_mapped_address == CLIENT
    assert response.mapped_address == CLIENT
    assert response.response_origin == FULL.primary
    assert response.other_address == FULL.alternate
    assert response.fingerprint


def test_ipv6_clients_get_ipv6_addresses() -> None:
    result = ask(stun.binding_request(), CLIENT_V6, FULL_V6.primary, FULL_V6)

    response = response_of(result)
    assert response.xor_mapped_address == CLIENT_V6
    assert response.mapped_address == CLIENT_V6
    assert response.other_address == FULL_V6.alternate


def test_fingerprint_and_software_follow_the_request_and_the_configuration() -> None:
    bare = response_of(ask(stun.binding_request(fingerprint=False)))
    named = response_of(ask(stun.binding_request(), software="macula-nat test"))

    assert not bare.fingerprint
    assert bare.software is None
    assert named.fingerprint
    assert named.software == "macula-nat test"


def test_a_single_address_observer_reports_no_other_address() -> None:
    response = response_of(ask(stun.binding_request(), addresses=SINGLE))

    assert response.xor_mapped_address == CLIENT
    assert response.response_origin == SINGLE.primary
    assert response.other_address is None


def test_a_wildcard_observer_leaves_out_the_origin_it_cannot_know() -> None:
    wildcard = ObserverAddresses(("0.0.0.0", 3478))
    response = response_of(ask(stun.binding_request(), local=wildcard.primary, addresses=wildcard))

    assert response.xor_mapped_address == CLIENT
    assert response.response_origin is None


# -- CHANGE-REQUEST and OTHER-ADDRESS (RFC 5780 section 6.1, table 1) ---------------------------

IP1, IP2 = "198.51.100.10", "198.51.100.11"
P1, P2 = 3478, 3479


@pytest.mark.parametrize("local", FULL.sockets)
@pytest.mark.parametrize(("change_ip", "change_port"), [(False, False), (True, False),
                                                        (False, True), (True, True)])  # fmt: skip
def test_change_request_picks_the_socket_of_table_1(
    local: Address, change_ip: bool, change_port: bool
) -> None:
    other_ip = IP2 if local[0] == IP1 else IP1
    other_port = P2 if local[1] == P1 else P1
    expected_origin = (other_ip if change_ip else local[0], other_port if change_port else local[1])

    result = ask(stun.binding_request(change_ip=change_ip, change_port=change_port), local=local)

    assert result.outcome is Outcome.ANSWERED
    assert result.origin == expected_origin
    assert result.destination == CLIENT
    response = response_of(result)
    assert response.response_origin == expected_origin
    # the alternate IP always: RFC 5780's value for requests to the primary IP, coturn's for
    # those to the alternate (its natdiscovery reads test II's OTHER-ADDRESS)
    assert response.other_address == (IP2, other_port)
    assert response.xor_mapped_address == CLIENT


def test_natdiscovery_test_iii_after_test_ii_goes_to_test_i_other_address() -> None:
    """coturn's client sends test III to test II's OTHER-ADDRESS; RFC 5780 sends it to test
    I's. Both are the same address here, so both classify an address-dependent mapping."""
    test_i = response_of(ask(stun.binding_request(), local=(IP1, P1)))
    test_ii = response_of(ask(stun.binding_request(), local=(IP2, P1)))
    assert test_i.other_address == test_ii.other_address == (IP2, P2)


@pytest.mark.parametrize(("change_ip", "change_port"), [(True, False), (False, True), (True, True)])
def test_a_single_address_observer_rejects_a_change_with_420(
    change_ip: bool, change_port: bool
) -> None:
    message = stun.binding_request(change_ip=change_ip, change_port=change_port)
    result = ask(message, addresses=SINGLE)

    assert result.outcome is Outcome.UNKNOWN_ATTRIBUTE
    assert result.origin == SINGLE.primary
    assert result.destination == CLIENT
    response = response_of(result)
    assert response.message_class is MessageClass.ERROR
    assert response.error is not None and response.error.code == 420
    assert response.unknown_attributes == (AttributeType.CHANGE_REQUEST,)


def test_an_empty_change_request_is_answered_even_with_one_address() -> None:
    message = request(change_request=ChangeRequest(change_ip=False, change_port=False))
    result = ask(message, addresses=SINGLE)

    assert result.outcome is Outcome.ANSWERED
    assert response_of(result).xor_mapped_address == CLIENT


# -- RESPONSE-PORT and PADDING ------------------------------------------------------------------


def test_response_port_changes_the_port_and_never_the_ip() -> None:
    result = ask(stun.binding_request(response_port=5000))

    assert result.outcome is Outcome.ANSWERED
    assert result.destination == (CLIENT[0], 5000)
    assert response_of(result).xor_mapped_address == CLIENT


@pytest.mark.parametrize(
    "message",
    [
        stun.binding_request(response_port=0),
        stun.binding_request(response_port=5000, padding=bytes(100)),
    ],
    ids=["port-0", "with-padding"],
)
def test_bad_response_port_requests_get_400(message: Message) -> None:
    result = ask(message)

    assert result.outcome is Outcome.BAD_REQUEST
    assert result.destination == CLIENT
    error = response_of(result).error
    assert error is not None and error.code == 400


@pytest.mark.parametrize("size", [0, 4, 96, 1472])
def test_padding_makes_the_response_as_large_as_the_request_and_no_larger(size: int) -> None:
    data = stun.binding_request(padding=bytes(size)).encode()
    result = ask(data)

    response = response_of(result)
    assert response.padding is not None
    assert result.response is not None
    unpadded = len(ask(stun.binding_request()).response or b"") + 4
    assert len(result.response) == max(len(data), unpadded)


# -- errors and silence -------------------------------------------------------------------------


def test_unknown_comprehension_required_attributes_get_420_listing_them() -> None:
    message = request(
        raw_attributes=[
            RawAttribute(UNKNOWN_REQUIRED, b"x"),
            RawAttribute(UNKNOWN_OPTIONAL, b"y"),
            RawAttribute(UNKNOWN_REQUIRED, b"z"),
        ]
    )
    result = ask(message)

    assert result.outcome is Outcome.UNKNOWN_ATTRIBUTE
    response = response_of(result)
    assert response.error is not None and response.error.code == 420
    assert response.unknown_attributes == (UNKNOWN_REQUIRED,)


def test_unknown_optional_attributes_are_ignored() -> None:
    result = ask(request(raw_attributes=[RawAttribute(UNKNOWN_OPTIONAL, b"y")]))

    assert result.outcome is Outcome.ANSWERED


def test_other_methods_get_400() -> None:
    message = request(method=0x003)  # TURN Allocate
    result = ask(message)

    assert result.outcome is Outcome.BAD_REQUEST
    response = response_of(result)
    assert response.method == 0x003
    assert response.error is not None and response.error.code == 400


@pytest.mark.parametrize(
    "message_class", [MessageClass.INDICATION, MessageClass.SUCCESS, MessageClass.ERROR]
)
def test_indications_and_responses_are_never_answered(message_class: MessageClass) -> None:
    result = ask(request(message_class=message_class))

    assert result == Answer(Outcome.NOT_A_REQUEST)


def _with_last_byte_flipped(data: bytes) -> bytes:
    """``data`` with its last byte changed (overwriting it with a constant leaves it as it was
    whenever the random transaction id made that byte the constant: 1 run in 256)."""
    return data[:-1] + bytes([data[-1] ^ 0xFF])


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello",
        b"\x00\x01\x00\x04" + bytes(16),  # no magic cookie, length past the end
        _with_last_byte_flipped(stun.binding_request().encode()),  # FINGERPRINT does not match
    ],
    ids=["empty", "text", "no-cookie", "bad-fingerprint"],
)
def test_malformed_datagrams_are_dropped(data: bytes) -> None:
    assert ask(data) == Answer(Outcome.MALFORMED)


@pytest.mark.parametrize("source", [("203.0.113.7", 0), ("0.0.0.0", 40000)])
def test_sources_no_response_can_reach_are_dropped(source: Address) -> None:
    assert ask(stun.binding_request(), source=source) == Answer(Outcome.MALFORMED)


# -- amplification ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("addresses", "source"), [(FULL, CLIENT), (FULL_V6, CLIENT_V6)], ids=["ipv4", "ipv6"]
)
def test_the_smallest_request_gets_a_full_answer_within_three_times_its_wire_size(
    addresses: ObserverAddresses, source: Address
) -> None:
    data = stun.binding_request(fingerprint=False).encode()
    assert len(data) == 20
    result = ask(data, source, addresses.primary, addresses)

    assert result.left_out == ()
    assert result.response is not None
    assert len(result.response) == (68 if addresses is FULL else 116)
    assert within_bound(data, result, source[0], DEFAULT_MAX_AMPLIFICATION)


def test_optional_attributes_give_way_least_useful_first() -> None:
    data = stun.binding_request(fingerprint=False).encode()
    result = ask(data, software="x" * 300)

    assert result.outcome is Outcome.ANSWERED
    assert result.left_out == (AttributeType.SOFTWARE,)
    response = response_of(result)
    assert response.software is None
    assert response.other_address == FULL.alternate

    tight = ask(data, max_amplification=1.5)  # 44 bytes: header, XOR-MAPPED, OTHER-ADDRESS
    assert tight.left_out == (
        AttributeType.MAPPED_ADDRESS,
        AttributeType.RESPONSE_ORIGIN,
    )
    assert response_of(tight).other_address == FULL.alternate
    assert within_bound(data, tight, CLIENT[0], 1.5)


def test_a_request_too_small_for_any_answer_is_refused() -> None:
    data = stun.binding_request(fingerprint=False).encode()

    assert ask(data, max_amplification=1.0) == Answer(Outcome.AMPLIFICATION_REFUSED)


def test_error_responses_shed_software_and_reason_to_fit() -> None:
    data = request(method=0x003, fingerprint=False).encode()
    result = ask(data, software="y" * 300, max_amplification=1.4)

    assert result.outcome is Outcome.BAD_REQUEST
    assert result.left_out == (AttributeType.SOFTWARE,)
    assert within_bound(data, result, CLIENT[0], 1.4)
    assert ask(data, max_amplification=1.0) == Answer(Outcome.AMPLIFICATION_REFUSED)


# -- configuration errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("primary", "alternate"),
    [
        (("198.51.100.10", 3478), ("198.51.100.10", 3479)),  # same IP
        (("198.51.100.10", 3478), ("198.51.100.11", 3478)),  # same port
        (("198.51.100.10", 3478), ("2001:db8::11", 3479)),  # two IP versions
        (("0.0.0.0", 3478), ("198.51.100.11", 3479)),  # wildcard
        (("198.51.100.10", 0), None),  # unbound port
    ],
)
def test_impossible_address_sets_are_rejected(primary: Address, alternate: Address | None) -> None:
    with pytest.raises(ValueError):
        ObserverAddresses(primary, alternate)


def test_answer_rejects_a_socket_the_observer_does_not_have() -> None:
    with pytest.raises(ValueError, match="not one of"):
        ask(stun.binding_request(), local=("198.51.100.99", 3478))


# -- properties ---------------------------------------------------------------------------------

ipv4_sources = st.tuples(st.ip_addresses(v=4).map(str), st.integers(0, 65535))
ipv6_sources = st.tuples(st.ip_addresses(v=6).map(str), st.integers(0, 65535))
factors = st.floats(1.0, 6.0)


def stun_shaped(body: bytes, first: int = 0x00) -> bytes:
    """A header that passes the cheap checks, in front of arbitrary attribute bytes."""
    body = body + bytes(-len(body) % 4)
    return struct.pack("!BBHI", first, 0x01, len(body), stun.MAGIC_COOKIE) + bytes(12) + body


@FAST
@given(
    st.one_of(st.binary(max_size=200), st.binary(max_size=200).map(stun_shaped)),
    ipv4_sources,
    st.sampled_from(FULL.sockets),
    factors,
)
def test_arbitrary_bytes_never_raise_and_never_amplify(
    data: bytes, source: Address, local: Address, factor: float
) -> None:
    result = answer(data, source, local, FULL, max_amplification=factor, software="s" * 40)

    assert isinstance(result, Answer)
    assert within_bound(data, result, source[0], factor)


raw_attributes = st.lists(
    st.builds(
        RawAttribute,
        st.sampled_from(
            [UNKNOWN_REQUIRED, UNKNOWN_OPTIONAL, int(AttributeType.USERNAME), 0x0024, 0x8029]
        ),
        st.binary(max_size=12),
    ),
    max_size=3,
)

messages = st.builds(
    Message,
    message_class=st.sampled_from(MessageClass),
    transaction_id=st.binary(min_size=12, max_size=12),
    method=st.sampled_from([stun.BINDING, stun.BINDING, 0x003, 0x0FF]),
    change_request=st.none() | st.builds(ChangeRequest, st.booleans(), st.booleans()),
    response_port=st.none() | st.integers(0, 65535),
    padding=st.none() | st.binary(max_size=300),
    software=st.none() | st.text(max_size=16),
    raw_attributes=raw_attributes,
    fingerprint=st.booleans(),
)


def expected_outcome(message: Message, addresses: ObserverAddresses) -> Outcome:
    """RFC 8489 and RFC 5780 as the module docstring reads them, one rule per line."""
    change = message.change_request
    wants_change = change is not None and (change.change_ip or change.change_port)
    if message.message_class is not MessageClass.REQUEST:
        return Outcome.NOT_A_REQUEST
    if message.method != stun.BINDING:
        return Outcome.BAD_REQUEST
    if message.unknown_required or (wants_change and not addresses.rfc5780):
        return Outcome.UNKNOWN_ATTRIBUTE
    if message.padding is not None and message.response_port is not None:
        return Outcome.BAD_REQUEST
    if message.response_port == 0:
        return Outcome.BAD_REQUEST
    return Outcome.ANSWERED


@FAST
@given(
    messages,
    st.sampled_from([(FULL, ipv4_sources), (SINGLE, ipv4_sources), (FULL_V6, ipv6_sources)]),
    st.data(),
)
def test_every_request_gets_the_answer_the_rfcs_ask_for(
    message: Message, place: tuple[ObserverAddresses, Any], data: st.DataObject
) -> None:
    addresses, sources = place
    source = data.draw(sources.filter(lambda s: s[1] != 0 and s[0] not in ("0.0.0.0", "::")))
    local = data.draw(st.sampled_from(addresses.sockets))
    encoded = message.encode()

    result = answer(encoded, source, local, addresses)

    assert result.outcome is expected_outcome(message, addresses)
    assert within_bound(encoded, result, source[0], DEFAULT_MAX_AMPLIFICATION)
    if result.response is None:
        return
    response = stun.decode(result.response)
    assert response.transaction_id == message.transaction_id
    assert response.method == message.method
    assert response.fingerprint == message.fingerprint
    if result.outcome is not Outcome.ANSWERED:
        assert response.message_class is MessageClass.ERROR
        assert (result.origin, result.destination) == (local, source)
        return
    change = message.change_request or ChangeRequest()
    origin = addresses.response_socket(local, change.change_ip, change.change_port)
    assert result.origin == origin
    assert result.destination == (source[0], message.response_port or source[1])
    # Byte for byte what the codec encodes for the same content.
    assert (
        result.response
        == Message(
            message_class=MessageClass.SUCCESS,
            transaction_id=message.transaction_id,
            mapped_address=source,
            xor_mapped_address=source,
            response_origin=origin,
            other_address=addresses.other_address(local),
            padding=response.padding,
            fingerprint=message.fingerprint,
        ).encode()
    )
    if message.padding is not None:
        padding = response.padding or b""
        assert padding == bytes(len(padding))
        assert (
            len(result.response) == len(encoded)
            if padding
            else len(encoded) <= len(result.response)
        )


@FAST
@given(messages, ipv4_sources, factors, st.text(max_size=100))
def test_no_request_draws_more_than_the_bound(
    message: Message, source: Address, factor: float, software: str
) -> None:
    encoded = message.encode()
    result = answer(
        encoded, source, FULL.primary, FULL, software=software, max_amplification=factor
    )

    assert within_bound(encoded, result, source[0], factor)
    if result.outcome is Outcome.AMPLIFICATION_REFUSED:
        assert result.response is None


@FAST
@given(
    st.binary(min_size=12, max_size=12),
    st.booleans(),
    st.one_of(ipv4_sources, st.just(("0.0.0.0", 1))),
    st.sampled_from(FULL.sockets),
    st.none() | st.tuples(st.integers(0, 27), st.integers(1, 255)),
)
def test_the_fast_path_answers_exactly_as_the_codec_would(
    transaction_id: bytes,
    fingerprint: bool,
    source: Address,
    local: Address,
    corruption: tuple[int, int] | None,
) -> None:
    """Plain requests skip the codec; with or without the shortcut, every answer is the same."""
    data = bytearray(stun.binding_request(transaction_id, fingerprint=fingerprint).encode())
    if corruption is not None and corruption[0] < len(data):
        data[corruption[0]] ^= corruption[1]

    fast = answer(bytes(data), source, local, FULL)
    with mock.patch.object(binding, "_plain_binding_request", return_value=None):
        slow = answer(bytes(data), source, local, FULL)

    assert fast == slow
