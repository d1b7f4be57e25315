"""The relay's wire codec: round trips, one error type for any input, and no amplification."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from macula_nat.identity import NodeId
from macula_nat.relay import frames
from macula_nat.relay.link import Link
from macula_nat.wire import stun

from .strategies import addresses, handshake_frames, node_ids, session_frames

ID = NodeId(bytes(32))
NONCE = bytes(16)
V4 = ("203.0.113.7", 40000)
V6 = ("2001:db8::1234:5678:9abc:def0", 40000)


@given(handshake_frames)
def test_handshake_frames_round_trip(frame: frames.HandshakeFrame) -> None:
    data = frames.encode(frame)

    assert frames.decode(data) == frame
    assert frames.is_relay_frame(data)


@given(session_frames)
def test_session_frame_bodies_round_trip(frame: frames.SessionFrame) -> None:
    kind, body = frames.encode_body(frame)

    assert frames.decode_body(kind, body) == frame


@given(session_frames, st.integers(1, 2**32 - 1))
def test_sealed_frames_decode_to_their_header_and_body(
    frame: frames.SessionFrame, registration: int
) -> None:
    data = Link(registration, bytes(32), bytes(32)).seal(frame)
    sealed = frames.decode(data)

    assert isinstance(sealed, frames.Sealed)
    assert (sealed.registration, sealed.counter) == (registration, 1)
    assert sealed.frame() == frame
    assert len(sealed.tag) == frames.TAG_SIZE


@settings(max_examples=1000)
@given(st.binary(max_size=200))
def test_any_bytes_decode_to_a_frame_or_raise_frame_error(data: bytes) -> None:
    try:
        frame = frames.decode(data)
    except frames.FrameError:
        return
    if isinstance(frame, frames.Sealed):
        try:
            frame.frame()
        except frames.FrameError:
            return


@settings(max_examples=500)
@given(st.sampled_from(list(frames.FrameType)), st.binary(max_size=120))
def test_any_body_after_a_valid_type_byte_parses_or_raises_frame_error(
    kind: frames.FrameType, rest: bytes
) -> None:
    with contextlib.suppress(frames.FrameError):
        frame = frames.decode(bytes((kind,)) + rest)
        if isinstance(frame, frames.Sealed):
            frame.frame()


@settings(max_examples=500)
@given(st.sampled_from([frames.FrameType.DATA, frames.FrameType.CONTROL]), st.binary(max_size=80))
def test_any_sealed_body_parses_or_raises_frame_error(kind: frames.FrameType, body: bytes) -> None:
    with contextlib.suppress(frames.FrameError):
        frames.decode_body(kind, body)


@given(handshake_frames, st.data())
def test_truncated_or_extended_frames_are_refused(
    frame: frames.HandshakeFrame, draw: st.DataObject
) -> None:
    data = frames.encode(frame)
    cut = draw.draw(st.integers(0, len(data) - 1))

    with pytest.raises(frames.FrameError):
        frames.decode(data[:cut])
    with pytest.raises(frames.FrameError):
        frames.decode(data + b"\x00")


def test_relay_first_bytes_stay_clear_of_stun_and_quic() -> None:
    types = {int(kind) for kind in frames.FrameType}

    assert types <= set(frames.FIRST_BYTES)
    assert all(4 <= byte <= 15 for byte in frames.FIRST_BYTES)
    assert not frames.is_relay_frame(stun.binding_request().encode())  # first byte 0 or 1
    assert not frames.is_relay_frame(bytes([0x40]))  # QUIC short header
    assert not frames.is_relay_frame(bytes([0xC0]))  # QUIC long header
    assert not frames.is_relay_frame(b"")


@pytest.mark.parametrize("observed", [V4, V6])
def test_no_answer_of_the_relay_is_larger_than_what_drew_it(observed: tuple[str, int]) -> None:
    hello = frames.encode(frames.Hello(NONCE, ID))
    challenge = frames.encode(frames.Challenge(NONCE, ID, bytes(24), observed))
    register = frames.encode(frames.Register(NONCE, ID, bytes(24), bytes(32), observed, bytes(64)))
    registered = frames.encode(frames.Registered(NONCE, 1, bytes(32), 3600, observed, bytes(64)))
    refused = frames.encode(frames.Refused(NONCE, frames.Reason.RELAY_DISABLED))
    link = Link(1, bytes(32), bytes(32))
    keepalive = link.seal(frames.Keepalive(2**64 - 1))
    pong = link.seal(frames.Pong(2**64 - 1, 1000, observed))

    assert len(hello) == frames.HELLO_SIZE
    assert len(challenge) <= len(hello)
    assert len(refused) <= len(hello)
    assert len(registered) <= len(register)
    assert len(pong) <= len(keepalive)


@given(session_frames)
def test_data_overhead_is_what_a_data_frame_adds(frame: frames.SessionFrame) -> None:
    if not isinstance(frame, frames.Data):
        return
    sealed = Link(7, bytes(32), bytes(32)).seal(frame)

    assert len(sealed) == len(frame.payload) + frames.DATA_OVERHEAD


@given(addresses, node_ids)
def test_field_validators_refuse_what_the_wire_cannot_carry(
    address: tuple[str, int], node_id: NodeId
) -> None:
    with pytest.raises(ValueError):
        frames.Hello(bytes(15), node_id)
    with pytest.raises(ValueError):
        frames.Data(0, b"")
    with pytest.raises(ValueError):
        frames.Pong(0, 1001, address)
    with pytest.raises(ValueError):
        frames.Challenge(NONCE, node_id, bytes(24), (address[0], 65536))


def test_reasons_have_the_snake_case_labels_users_see() -> None:
    assert frames.Reason.MAX_SESSIONS_REACHED.label == "max_sessions_reached"
    assert frames.Reason.UNKNOWN_TARGET.label == "unknown_target"
    assert frames.Reason.PER_NODE_CAP.label == "per_node_cap"


def test_unknown_codes_are_frame_errors() -> None:
    with pytest.raises(frames.FrameError, match="reason"):
        frames.decode(bytes((frames.FrameType.REFUSED,)) + NONCE + b"\xff")
    with pytest.raises(frames.FrameError, match="control kind"):
        frames.decode_body(frames.FrameType.CONTROL, b"\x63")
    with pytest.raises(frames.FrameError, match="family"):
        frames.decode(
            bytes((frames.FrameType.CHALLENGE,)) + NONCE + bytes(32) + bytes(24) + b"\x05"
        )
    with pytest.raises(frames.FrameError, match="not a relay frame"):
        frames.decode(b"\x0f")
