"""How a run of datagrams to one address splits into UDP GSO sends (sans-IO).

Linux's generic segmentation offload for UDP (``UDP_SEGMENT``, kernel 4.18+) sends several
datagrams in one ``sendmsg``: the kernel cuts the payload into segments of one size, the last
one possibly shorter. A QUIC output step hands over datagrams of the path's size with a shorter
one at the end, so one system call can carry what took dozens (issue 14: in a bulk transfer the
sending process spent most of its time on a ``sendto`` per datagram). The receiving side's
UDP GRO (``UDP_GRO``, 5.0+) is the mirror image: one read returns such a run back to back with
its segment size, which :func:`split_segments` cuts apart. This module only decides the splits;
:mod:`macula_nat.net.real` does the system calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

__all__ = ["MAX_SEGMENTS", "MAX_SEND", "segment_runs", "split_segments"]

MAX_SEGMENTS: Final = 64
"""Segments one GSO send may carry (the kernel's ``UDP_MAX_SEGMENTS``)."""
MAX_SEND: Final = 65507
"""Bytes one GSO send may carry: an IPv4 datagram's largest payload (the kernel refuses a
larger total)."""


def segment_runs(sizes: Sequence[int]) -> list[tuple[int, int]]:
    """Split datagrams of ``sizes`` (in sending order) into ``(start, stop)`` index ranges,
    each one send: every datagram of a range has the first one's size except the last, which
    may be shorter (never empty, unless the range is that one datagram), at most
    :data:`MAX_SEGMENTS` datagrams and :data:`MAX_SEND` bytes. The ranges cover every
    datagram, in order; a range of one is an ordinary send."""
    runs: list[tuple[int, int]] = []
    count = len(sizes)
    start = 0
    while start < count:
        segment = sizes[start]
        stop = start + 1
        total = segment
        if segment > 0:
            while stop < count and stop - start < MAX_SEGMENTS:
                size = sizes[stop]
                if size > segment or size == 0 or total + size > MAX_SEND:
                    break
                total += size
                stop += 1
                if size < segment:  # a shorter datagram ends its run
                    break
        runs.append((start, stop))
        start = stop
    return runs


def split_segments(data: bytes, size: int) -> list[bytes]:
    """The datagrams of one coalesced read: ``size`` bytes each, the last possibly shorter."""
    if size < 1:
        raise ValueError(f"segment size must be at least 1, not {size}")
    return [data[offset : offset + size] for offset in range(0, len(data), size)]
