"""Relay frames on a byte stream and the bounded send queue, sans-IO."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from macula_nat.relay.stream_framing import FrameReader, StreamFramingError, encode_frame
from macula_nat.relay.tcp_link import SendQueue

frames = st.lists(st.binary(min_size=1, max_size=300), max_size=20)


@given(frames, st.lists(st.integers(min_value=1, max_value=50), min_size=1))
def test_frames_come_out_whole_and_in_order_however_the_stream_is_cut(
    sent: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(encode_frame(frame) for frame in sent)
    reader = FrameReader(max_frame=300)
    received: list[bytes] = []
    position, index = 0, 0
    while position < len(stream):
        size = cuts[index % len(cuts)]
        received += reader.feed(stream[position : position + size])
        position += size
        index += 1
    assert received == sent
    assert reader.buffered == 0


@given(st.integers(min_value=301, max_value=0xFFFF), st.binary(max_size=10))
def test_a_length_over_the_limit_is_refused_before_its_bytes_arrive(
    length: int, tail: bytes
) -> None:
    reader = FrameReader(max_frame=300)
    with pytest.raises(StreamFramingError, match="1-300"):
        reader.feed(length.to_bytes(2, "big") + tail)


def test_an_empty_frame_is_refused_both_ways() -> None:
    with pytest.raises(ValueError):
        encode_frame(b"")
    with pytest.raises(StreamFramingError):
        FrameReader().feed(b"\x00\x00")


@given(st.integers(min_value=1, max_value=5000), st.lists(st.integers(1, 2000), max_size=50))
def test_a_send_queue_never_holds_more_than_its_limit_and_counts_what_it_drops(
    limit: int, sizes: list[int]
) -> None:
    queue = SendQueue(limit)
    kept: list[bytes] = []
    for number, size in enumerate(sizes):
        frame = bytes([number % 256]) * size
        if queue.push(frame):
            kept.append(frame)
        assert queue.queued <= limit
    assert queue.dropped == len(sizes) - len(kept)
    assert queue.take() == kept
    assert queue.queued == 0 and len(queue) == 0
