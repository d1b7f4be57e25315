"""Userspace delay line joining two TAP devices: the lab's stand-in for netem.

Some kernels ship without ``sch_netem``. This program attaches to a persistent TAP device in its
own namespace and to one in another namespace, and copies Ethernet frames both ways, each frame
delayed by a fixed time and dropped with a fixed probability (tail-dropped beyond a queue limit,
like netem's ``limit``). Only IP frames are dropped: losing ARP stalls the first packets to an
address for a second, which tests the kernel's neighbour cache rather than our protocols. Run it
inside the first namespace::

    python -m tests.nat_lab.wire TAP PEER_NETNS PEER_TAP --delay-ms 20 --loss 0.05

It writes ``ready`` on stdout once both devices are attached, and exits on SIGTERM, when its
parent dies, or after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import logging
import os
import random
import struct
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial

import attrs
import trio

from tests.nat_lab.commands import WIRE_READY

logger = logging.getLogger(__name__)

_TUNSETIFF = 0x400454CA
_IFF_TAP = 0x0002
_IFF_NO_PI = 0x1000
_IP_ETHERTYPES = (b"\x08\x00", b"\x86\xdd")
"""IPv4 and IPv6: the frames loss applies to (bytes 12-13 of an Ethernet frame)."""
_CLONE_NEWNET = 0x40000000
_MAX_FRAME = 65536
_BURST = 64


@attrs.define
class _Counters:
    forwarded: int = 0
    lost: int = 0
    overflowed: int = 0


def open_tap(name: str) -> int:
    """Attach to TAP device ``name`` of the current namespace; return a non-blocking fd."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", name.encode(), _IFF_TAP | _IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _setns(libc: ctypes.CDLL, fd: int) -> None:
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextmanager
def inside_netns(netns: str) -> Iterator[None]:
    """Run the block with this thread in network namespace ``netns``, then come back."""
    libc = _libc()
    home = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        there = os.open(f"/run/netns/{netns}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(libc, there)
            try:
                yield
            finally:
                _setns(libc, home)
        finally:
            os.close(there)
    finally:
        os.close(home)


def _watch_parent(parent_pid: int) -> int:
    """A pidfd of ``parent_pid``, readable once it exits. Not ``PR_SET_PDEATHSIG``: that fires
    when the parent *thread* that forked us exits, and Trio spawns processes from worker threads
    that end after 10 idle seconds, which killed every wire 10 s into a quiet test."""
    try:
        return os.pidfd_open(parent_pid)
    except ProcessLookupError:
        raise SystemExit("parent already gone") from None


async def _until_readable(fd: int, scope: trio.CancelScope) -> None:
    await trio.lowlevel.wait_readable(fd)
    logger.info("parent gone; stopping")
    scope.cancel()


async def _deliver(
    recv: trio.MemoryReceiveChannel[tuple[float, bytes]], dst: int, counters: _Counters
) -> None:
    async with recv:
        async for due, frame in recv:
            await trio.sleep_until(due)
            try:
                os.write(dst, frame)
            except OSError as exc:
                logger.debug("write failed: %s", exc)
                continue
            counters.forwarded += 1


async def _direction(
    src: int,
    dst: int,
    *,
    delay_s: float,
    loss: float,
    limit: int,
    rng: random.Random,
    counters: _Counters,
) -> None:
    send, recv = trio.open_memory_channel[tuple[float, bytes]](limit)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_deliver, recv, dst, counters)
        async with send:
            while True:
                await trio.lowlevel.wait_readable(src)
                for _ in range(_BURST):
                    try:
                        frame = os.read(src, _MAX_FRAME)
                    except BlockingIOError:
                        break
                    if loss > 0 and frame[12:14] in _IP_ETHERTYPES and rng.random() < loss:
                        counters.lost += 1
                        continue
                    try:
                        send.send_nowait((trio.current_time() + delay_s, frame))
                    except trio.WouldBlock:
                        counters.overflowed += 1


async def forward(
    a: int,
    b: int,
    *,
    delay_s: float,
    loss: float,
    limit: int,
    seed: int | None,
    max_seconds: float,
    parent: int | None = None,
) -> None:
    """Copy frames between fds ``a`` and ``b`` with delay and loss for ``max_seconds``, or
    until the process whose pidfd is ``parent`` exits."""
    rng = random.Random(seed)
    out, back = _Counters(), _Counters()
    with trio.move_on_after(max_seconds) as scope:
        async with trio.open_nursery() as nursery:
            if parent is not None:
                nursery.start_soon(_until_readable, parent, scope)
            for src, dst, counters in ((a, b, out), (b, a, back)):
                nursery.start_soon(
                    partial(
                        _direction,
                        src,
                        dst,
                        delay_s=delay_s,
                        loss=loss,
                        limit=limit,
                        rng=rng,
                        counters=counters,
                    )
                )
    logger.info("wire stopped: a->b %s, b->a %s", out, back)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.nat_lab.wire", description=__doc__)
    parser.add_argument("tap", help="TAP device in this namespace")
    parser.add_argument("peer_netns", help="namespace of the other TAP device")
    parser.add_argument("peer_tap", help="TAP device in PEER_NETNS")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay")
    parser.add_argument("--loss", type=float, default=0.0, help="drop probability per frame")
    parser.add_argument("--limit", type=int, default=1000, help="queue limit per direction")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--max-seconds", type=float, default=3600.0)
    parser.add_argument("--parent-pid", type=int, default=None)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: attach both TAP devices, report ready, forward until stopped."""
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="wire: %(message)s")
    parent = None if args.parent_pid is None else _watch_parent(args.parent_pid)
    a = open_tap(args.tap)
    with inside_netns(args.peer_netns):
        b = open_tap(args.peer_tap)
    sys.stdout.buffer.write(WIRE_READY)
    sys.stdout.buffer.flush()
    trio.run(
        partial(
            forward,
            a,
            b,
            delay_s=args.delay_ms / 1000.0,
            loss=args.loss,
            limit=args.limit,
            seed=args.seed,
            max_seconds=args.max_seconds,
            parent=parent,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
