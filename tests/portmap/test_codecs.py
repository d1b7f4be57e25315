"""NAT-PMP and PCP codecs: known encodings, round trips and fuzzing (hypothesis)."""

from __future__ import annotations

import contextlib

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from macula_nat.portmap import natpmp, pcp
from macula_nat.portmap.epoch import EpochSample, epoch_reset
from macula_nat.portmap.errors import PortMapDecodeError

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
ipv4 = st.ip_addresses(v=4).map(str)
ips = st.ip_addresses().map(str)

# -- NAT-PMP ---------------------------------------------------------------------------------------


def test_natpmp_known_bytes() -> None:
    assert natpmp.encode_request(natpmp.ExternalAddressRequest()) == b"\x00\x00"
    request = natpmp.MapRequest(internal_port=4500, external_port=4500, lifetime=7200)
    assert natpmp.encode_request(request) == bytes.fromhex("0001 0000 1194 1194 00001c20")
    answer = bytes.fromhex("0080 0000 0000002a cb007107")
    decoded = natpmp.decode_response(answer)
    assert decoded == natpmp.ExternalAddressResponse(0, 42, "203.0.113.7")
    mapped = natpmp.decode_response(bytes.fromhex("0081 0000 0000002a 1194 d431 00000e10"))
    assert mapped == natpmp.MapResponse(0, 42, 4500, 54321, 3600)


def test_natpmp_header_only_error() -> None:
    decoded = natpmp.decode_response(bytes.fromhex("0081 0005 00000001"))
    assert decoded == natpmp.ErrorResponse(0x81, natpmp.Result.UNSUPPORTED_OPCODE, 1)
    assert natpmp.result_name(decoded.result) == "unsupported_opcode"
    assert natpmp.result_name(99) == "unknown result 99"


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "at least"),
        (bytes.fromhex("0100 0000 00000000 00000000"), "version 1"),
        (bytes.fromhex("0001 0000 00000000"), "request, not an answer"),
        (bytes.fromhex("0081 0000 00000000"), "too short"),
        (bytes.fromhex("00ff 0000 00000000"), "unknown opcode"),
    ],
)
def test_natpmp_malformed_answers(data: bytes, words: str) -> None:
    with pytest.raises(PortMapDecodeError, match=words):
        natpmp.decode_response(data)


natpmp_requests = st.one_of(
    st.just(natpmp.ExternalAddressRequest()),
    st.builds(natpmp.MapRequest, u16, u16, u32, st.sampled_from([1, 2])),
)
natpmp_responses = st.one_of(
    st.builds(natpmp.ExternalAddressResponse, u16, u32, ipv4),
    st.builds(natpmp.MapResponse, u16, u32, u16, u16, u32, st.sampled_from([1, 2])),
    st.builds(
        natpmp.ErrorResponse, st.sampled_from([0x80, 0x81, 0x82, 0x85]), st.integers(1, 0xFFFF), u32
    ),
)


@given(natpmp_requests)
def test_natpmp_request_round_trip(request: natpmp.Request) -> None:
    assert natpmp.decode_request(natpmp.encode_request(request)) == request


@given(natpmp_responses)
def test_natpmp_response_round_trip(response: natpmp.Response) -> None:
    assert natpmp.decode_response(natpmp.encode_response(response)) == response


@given(st.binary(max_size=64))
def test_natpmp_fuzz_raises_only_decode_error(data: bytes) -> None:
    for decode in (natpmp.decode_request, natpmp.decode_response):
        try:
            decode(data)
        except PortMapDecodeError as exc:
            assert str(exc)


# -- PCP -------------------------------------------------------------------------------------------

NONCE = bytes(range(12))


def test_pcp_map_request_known_bytes() -> None:
    body = pcp.MapBody(NONCE, internal_port=4500, external_port=0, external_ip="0.0.0.0")
    request = pcp.Request(pcp.OP_MAP, 7200, "192.168.1.20", body)
    data = pcp.encode_request(request)
    assert len(data) == 60
    assert data[:8] == bytes.fromhex("0201 0000 00001c20")
    assert data[8:24] == bytes.fromhex("00000000000000000000ffff c0a80114")
    assert data[24:36] == NONCE
    assert data[36:40] == bytes.fromhex("11 000000")
    assert data[40:44] == bytes.fromhex("1194 0000")
    assert data[44:60] == bytes.fromhex("00000000000000000000ffff 00000000")


def test_pcp_ipv4_mapped_addresses() -> None:
    assert pcp.unpack_ip(pcp.pack_ip("203.0.113.7")) == "203.0.113.7"
    assert pcp.unpack_ip(pcp.pack_ip("2001:db8::1")) == "2001:db8::1"
    assert pcp.MapBody(NONCE, 1, 2, "::ffff:10.0.0.1").external_ip == "10.0.0.1"


def test_pcp_error_answer_without_body() -> None:
    header = bytes.fromhex("0281 0003 00000000 00000005") + bytes(12)
    decoded = pcp.decode_response(header)
    assert decoded.result == pcp.Result.MALFORMED_REQUEST and decoded.map is None
    assert pcp.result_name(decoded.result) == "malformed_request"


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (bytes(20), "at least 24"),
        (bytes(25), "multiple of 4"),
        (bytes(1104), "at most 1100"),
        (b"\x01" + bytes(23), "version 1"),
        (bytes.fromhex("0201") + bytes(22), "request"),
        (bytes.fromhex("0281 0000") + bytes(20), "MAP response"),
        (bytes.fromhex("0280 0000") + bytes(20) + bytes.fromhex("0100 0008"), "runs past"),
    ],
)
def test_pcp_malformed_answers(data: bytes, words: str) -> None:
    with pytest.raises(PortMapDecodeError, match=words):
        pcp.decode_response(data)


options = st.lists(st.builds(pcp.Option, st.integers(0, 255), st.binary(max_size=12)), max_size=3)
map_bodies = st.builds(pcp.MapBody, st.binary(min_size=12, max_size=12), u16, u16, ips,
                       st.integers(0, 255))  # fmt: skip
pcp_requests = st.builds(
    pcp.Request,
    st.sampled_from([pcp.OP_ANNOUNCE, pcp.OP_MAP, 2, 99]),
    u32,
    ips,
    map_bodies,
    options.map(tuple),
).map(lambda r: r if r.opcode == pcp.OP_MAP else attrs.evolve(r, map=None))
pcp_responses = st.builds(
    pcp.Response,
    st.sampled_from([pcp.OP_ANNOUNCE, pcp.OP_MAP, 2]),
    st.integers(0, 255),
    u32,
    u32,
    map_bodies,
    options.map(tuple),
).map(lambda r: r if r.opcode == pcp.OP_MAP else attrs.evolve(r, map=None))


@given(pcp_requests)
def test_pcp_request_round_trip(request: pcp.Request) -> None:
    assert pcp.decode_request(pcp.encode_request(request)) == request


@given(pcp_responses)
def test_pcp_response_round_trip(response: pcp.Response) -> None:
    assert pcp.decode_response(pcp.encode_response(response)) == response


@given(st.binary(max_size=200))
def test_pcp_fuzz_raises_only_decode_error(data: bytes) -> None:
    for decode in (pcp.decode_request, pcp.decode_response):
        try:
            decode(data)
        except PortMapDecodeError as exc:
            assert str(exc)


@given(st.binary(min_size=24, max_size=120).map(lambda b: b"\x02" + b[1 : len(b) // 4 * 4]))
def test_pcp_fuzz_well_framed(data: bytes) -> None:
    """Version 2, whole words: the decoder gets past the frame checks into the bodies."""
    for decode in (pcp.decode_request, pcp.decode_response):
        with contextlib.suppress(PortMapDecodeError):
            decode(data)


# -- epochs ----------------------------------------------------------------------------------------


def test_epoch_reset() -> None:
    first = EpochSample(server=1000, client=50.0)
    assert not epoch_reset(None, first)
    assert not epoch_reset(first, EpochSample(server=1100, client=150.0))
    assert not epoch_reset(first, EpochSample(server=1088, client=150.0))  # 7/8 of 100 s
    assert epoch_reset(first, EpochSample(server=1080, client=150.0))
    assert epoch_reset(first, EpochSample(server=3, client=51.0))  # the router rebooted
    assert not epoch_reset(first, EpochSample(server=1000, client=50.5))


@given(st.integers(0, 2**31), st.floats(0, 1e6), st.floats(0, 1e6))
def test_epoch_that_keeps_pace_is_never_a_reset(server: int, at: float, elapsed: float) -> None:
    previous = EpochSample(server, at)
    assert not epoch_reset(previous, EpochSample(server + int(elapsed), at + elapsed))
