"""Relay frames on a byte stream, sans-IO: a preface, then each frame behind its length.

A relay frame is a datagram; on a TCP/TLS link (:mod:`.tcp_server`, :mod:`.tcp_client`) each one
travels as ``length (2, big-endian) | frame``, after the client's :data:`PREFACE`, which tells
this framing apart from an HTTP/1.1 request (the WebSocket form, where each frame is one binary
message instead) on the same port. :class:`FrameReader` takes the bytes as they arrive and
returns the whole frames; a length over its ``max_frame`` is a :class:`StreamFramingError`, after
which the link is closed: a peer that sends one is broken or hostile, and skipping it would
leave the stream out of step.
"""

from __future__ import annotations

import struct
from typing import Final

__all__ = [
    "DEFAULT_MAX_FRAME",
    "LENGTH_SIZE",
    "PREFACE",
    "FrameReader",
    "StreamFramingError",
    "encode_frame",
]

PREFACE: Final = b"MACULA-RELAY/1\r\n"
"""What a client sends first on a framed link (an HTTP request starts with a method instead)."""
LENGTH_SIZE: Final = 2
DEFAULT_MAX_FRAME: Final = 4096
"""Largest frame accepted by default: a relayed QUIC datagram (at most 1452 bytes on a 1500
byte path) with the relay's 33 bytes of framing fits three times over; nothing a node sends is
larger."""
_LENGTH: Final = struct.Struct(">H")


class StreamFramingError(ValueError):
    """The stream broke the framing (a frame over the limit, or an empty one)."""


def encode_frame(frame: bytes) -> bytes:
    """``frame`` behind its length; ValueError when it is empty or longer than 65535."""
    if not 0 < len(frame) <= 0xFFFF:
        raise ValueError(f"a framed relay frame is 1-65535 bytes, not {len(frame)}")
    return _LENGTH.pack(len(frame)) + frame


class FrameReader:
    """Whole frames out of a byte stream fed in pieces of any size."""

    __slots__ = ("_buffer", "max_frame")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        if not 0 < max_frame <= 0xFFFF:
            raise ValueError(f"max_frame must be 1-65535, not {max_frame}")
        self.max_frame = max_frame
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes held for a frame not yet whole (at most ``max_frame + 1``)."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """The frames ``data`` completes, in order; raises :class:`StreamFramingError` at the
        first bad length (the frames before it are lost with the link)."""
        buffer = self._buffer
        buffer += data
        frames: list[bytes] = []
        start = 0
        end = len(buffer)
        while end - start >= LENGTH_SIZE:
            (length,) = _LENGTH.unpack_from(buffer, start)
            if length == 0 or length > self.max_frame:
                raise StreamFramingError(
                    f"frame of {length} bytes (1-{self.max_frame} are accepted)"
                )
            if end - start - LENGTH_SIZE < length:
                break
            start += LENGTH_SIZE
            frames.append(bytes(buffer[start : start + length]))
            start += length
        del buffer[:start]
        return frames
