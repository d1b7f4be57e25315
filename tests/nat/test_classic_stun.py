"""RFC 3489 (classic STUN) requests: legacy NAT-type clients get the answers they expect."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from macula_nat.nat.binding import Answer, Outcome, answer, wire_size
from macula_nat.net.address import Address
from macula_nat.wire import classic_stun

from .test_binding import CLIENT, CLIENT_V6, FULL, SINGLE

TID = bytes(range(16))


def classic_request(*attributes: tuple[int, bytes], tid: bytes = TID) -> bytes:
    body = b"".join(struct.pack("!HH", kind, len(value)) + value for kind, value in attributes)
    return struct.pack("!HH", 0x0001, len(body)) + tid + body


def change(ip: bool, port: bool) -> tuple[int, bytes]:
    return classic_stun.CHANGE_REQUEST, (ip * 4 | port * 2).to_bytes(4, "big")


def attributes_of(response: bytes) -> dict[int, bytes]:
    _, length = struct.unpack_from("!HH", response)
    assert length == len(response) - 20
    found = {}
    offset = 20
    while offset < len(response):
        attribute, size = struct.unpack_from("!HH", response, offset)
        found[attribute] = response[offset + 4 : offset + 4 + size]
        offset += 4 + size
    return found


def address_of(value: bytes) -> Address:
    _, family, port = struct.unpack_from("!BBH", value)
    assert family == 1
    return ".".join(str(b) for b in value[4:8]), port


@pytest.mark.parametrize(
    ("flags", "origin"),
    [
        ((False, False), FULL.primary),
        ((True, True), FULL.alternate),
        ((False, True), (FULL.primary[0], FULL.alternate[1])),  # type: ignore[index]
        ((True, False), (FULL.alternate[0], FULL.primary[1])),  # type: ignore[index]
    ],
)
def test_a_classic_request_gets_mapped_source_and_changed_addresses(
    flags: tuple[bool, bool], origin: Address
) -> None:
    result = answer(classic_request(change(*flags)), CLIENT, FULL.primary, FULL)
    assert (result.outcome, result.origin, result.destination) == (
        Outcome.ANSWERED,
        origin,
        CLIENT,
    )
    assert result.response is not None
    assert result.response[:2] == b"\x01\x01" and result.response[4:20] == TID  # no cookie
    found = attributes_of(result.response)
    assert address_of(found[classic_stun.MAPPED_ADDRESS]) == CLIENT
    assert address_of(found[classic_stun.SOURCE_ADDRESS]) == origin
    assert address_of(found[classic_stun.CHANGED_ADDRESS]) == FULL.alternate


def test_changed_address_from_the_alternate_socket_is_the_primary() -> None:
    result = answer(classic_request(), CLIENT, FULL.alternate, FULL)  # type: ignore[arg-type]
    assert result.response is not None
    found = attributes_of(result.response)
    assert address_of(found[classic_stun.CHANGED_ADDRESS]) == FULL.primary


def test_a_single_address_observer_refuses_a_change_with_420() -> None:
    result = answer(classic_request(change(True, True)), CLIENT, SINGLE.primary, SINGLE)
    assert result.outcome is Outcome.UNKNOWN_ATTRIBUTE
    assert result.response is not None and result.response[:2] == b"\x01\x11"
    unknown = attributes_of(result.response)[classic_stun.UNKNOWN_ATTRIBUTES]
    assert classic_stun.CHANGE_REQUEST in struct.unpack(f"!{len(unknown) // 2}H", unknown)


def test_response_address_is_refused_and_the_error_goes_to_the_source() -> None:
    victim = struct.pack("!BBH", 0, 1, 9) + bytes([192, 0, 2, 99])
    result = answer(
        classic_request((classic_stun.RESPONSE_ADDRESS, victim)), CLIENT, FULL.primary, FULL
    )
    assert (result.outcome, result.destination) == (Outcome.BAD_REQUEST, CLIENT)


def test_shared_secret_attributes_get_420() -> None:
    username = (0x0006, b"user")
    result = answer(classic_request(username), CLIENT, FULL.primary, FULL)
    assert result.outcome is Outcome.UNKNOWN_ATTRIBUTE


def test_ipv6_sources_get_no_classic_answer() -> None:
    assert answer(classic_request(), CLIENT_V6, SINGLE.primary, SINGLE) == Answer(Outcome.MALFORMED)


@given(data=st.binary(max_size=64))
def test_any_bytes_without_the_cookie_are_answered_or_dropped_never_raise(data: bytes) -> None:
    result = answer(data, CLIENT, FULL.primary, FULL)
    if result.response is not None:
        assert wire_size(len(result.response), CLIENT[0]) <= 3 * wire_size(len(data), CLIENT[0])


@given(ip=st.booleans(), port=st.booleans(), tid=st.binary(min_size=16, max_size=16))
def test_parse_reads_back_what_a_client_sends(ip: bool, port: bool, tid: bytes) -> None:
    parsed = classic_stun.parse_classic_request(classic_request(change(ip, port), tid=tid))
    assert parsed == classic_stun.ClassicRequest(tid, ip, port)
