"""What the benchmarks' simple baselines send with: runs of equal-sized datagrams to one address
in one ``sendmsg`` (UDP GSO), as the library's real endpoint does, so that a ratio measures our
work against the same system calls, not against a datagram per call."""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence
from typing import Final

import trio

from macula_nat.net.segments import segment_runs

UDP_SEGMENT: Final = 103
"""``UDP_SEGMENT`` from ``linux/udp.h`` (the segment size of a GSO send)."""
_SIZE: Final = struct.Struct("=H")


async def send_runs(sock: socket.socket, datagrams: Sequence[bytes], address: object) -> None:
    """Send ``datagrams`` to ``address`` in order, each run in one call; wait only while the
    socket's buffer is full (a non-blocking socket)."""
    for start, stop in segment_runs([len(data) for data in datagrams]):
        while True:
            try:
                if stop - start == 1:
                    sock.sendto(datagrams[start], address)
                else:
                    run = datagrams[start:stop]
                    gso = [(socket.IPPROTO_UDP, UDP_SEGMENT, _SIZE.pack(len(run[0])))]
                    sock.sendmsg(run, gso, 0, address)
                break
            except BlockingIOError:
                await trio.lowlevel.wait_writable(sock)
