"""Sealed frames: authentic ones open once, forged, tampered, replayed and reflected ones never."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from macula_nat.identity import NodeId
from macula_nat.relay import frames
from macula_nat.relay.link import WINDOW, Link, LinkKeys, ReplayWindow, Verdict, derive_keys

from .strategies import session_frames

KEYS = LinkKeys(bytes(range(32)), bytes(range(32, 64)))
REGISTRATION = 0x01020304


def pair() -> tuple[Link, Link]:
    """The node's and the relay's end of one registration."""
    return Link.for_node(REGISTRATION, KEYS), Link.for_relay(REGISTRATION, KEYS)


@given(st.lists(session_frames, min_size=1, max_size=5))
def test_frames_sealed_by_one_end_open_at_the_other_in_both_directions(
    sent: list[frames.SessionFrame],
) -> None:
    node, relay = pair()

    assert [relay.open(node.seal(frame)) for frame in sent] == sent
    assert [node.open(relay.seal(frame)) for frame in sent] == sent
    assert node.sent == relay.sent == len(sent)


def test_seal_data_is_seal_of_a_data_frame() -> None:
    node, relay = pair()
    other, _ = pair()

    assert node.seal_data(9, b"payload") == other.seal(frames.Data(9, b"payload"))
    assert relay.open(node.seal_data(9, b"x")) == frames.Data(9, b"x")


def test_a_frame_opens_once_however_often_it_arrives() -> None:
    node, relay = pair()
    data = node.seal(frames.Keepalive(1))

    assert relay.authenticate(data) is Verdict.NEWEST
    assert relay.authenticate(data) is Verdict.REPLAYED
    assert relay.open(data) is Verdict.REPLAYED


def test_reordered_frames_within_the_window_open_once_older_ones_never() -> None:
    node, relay = pair()
    sealed = [node.seal_data(1, bytes([i % 256])) for i in range(WINDOW + 2)]

    assert relay.authenticate(sealed[-1]) is Verdict.NEWEST
    assert relay.authenticate(sealed[5]) is Verdict.ACCEPTED
    assert relay.authenticate(sealed[5]) is Verdict.REPLAYED
    assert relay.authenticate(sealed[0]) is Verdict.REPLAYED  # WINDOW + 1 behind: too old


@settings(max_examples=300)
@given(session_frames, st.data())
def test_any_flipped_bit_makes_a_frame_forged_or_foreign(
    frame: frames.SessionFrame, draw: st.DataObject
) -> None:
    node, relay = pair()
    data = bytearray(node.seal(frame))
    bit = draw.draw(st.integers(8, 8 * len(data) - 1))  # any bit after the type byte
    data[bit // 8] ^= 1 << (bit % 8)

    assert relay.authenticate(bytes(data)) in (Verdict.FORGED, Verdict.REPLAYED)
    assert relay.window.highest == 0  # nothing recorded


@settings(max_examples=300)
@given(st.binary(max_size=100))
def test_random_bytes_never_authenticate(data: bytes) -> None:
    _, relay = pair()

    assert relay.authenticate(bytes([frames.FrameType.DATA]) + data) < Verdict.ACCEPTED


def test_a_frame_cannot_be_reflected_to_its_sender_or_moved_to_another_registration() -> None:
    node, _ = pair()
    data = node.seal(frames.Keepalive(5))
    elsewhere = Link.for_relay(REGISTRATION + 1, KEYS)
    stranger = Link.for_relay(REGISTRATION, LinkKeys(os.urandom(32), os.urandom(32)))

    assert node.authenticate(data) is Verdict.FORGED  # the other direction's key
    assert elsewhere.authenticate(data) is Verdict.FORGED
    assert stranger.authenticate(data) is Verdict.FORGED


def test_derived_keys_differ_per_direction_and_per_registration() -> None:
    def keys(registration: int) -> LinkKeys:
        return derive_keys(
            bytes(32),
            client_nonce=bytes(16),
            cookie=bytes(24),
            node_id=NodeId(bytes(32)),
            relay_id=NodeId(bytes([1]) * 32),
            registration=registration,
        )

    first, second = keys(1), keys(2)

    assert first.node_to_relay != first.relay_to_node
    assert {first.node_to_relay, first.relay_to_node}.isdisjoint(
        {second.node_to_relay, second.relay_to_node}
    )


@settings(max_examples=300)
@given(st.lists(st.integers(0, 3 * WINDOW), max_size=200))
def test_the_replay_window_accepts_each_recent_counter_exactly_once(counters: list[int]) -> None:
    window = ReplayWindow()
    seen: set[int] = set()
    highest = 0
    for counter in counters:
        expected = counter > 0 and counter not in seen and counter > highest - WINDOW
        assert window.fresh(counter) == expected, counter
        if expected:
            assert window.commit(counter) == (counter > highest)
            seen.add(counter)
            highest = max(highest, counter)
    assert window.highest == highest
