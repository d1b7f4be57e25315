"""The interface on real sockets: ``trio.socket`` UDP, IPv4 and IPv6."""

from __future__ import annotations

import errno
import logging
import socket
import struct
import sys
from collections import deque
from collections.abc import Sequence
from typing import Any, Final

import trio

from macula_nat.net.address import (
    ANY_IPV4,
    Address,
    address_family,
    destination_address,
    ip_version,
    normalise_address,
    normalise_ip,
)
from macula_nat.net.endpoint import (
    READ_BATCH,
    UdpEndpoint,
    UdpStack,
    check_datagram_size,
    check_dual_stack,
)
from macula_nat.net.local_addresses import discover_local_addresses
from macula_nat.net.segments import segment_runs, split_segments
from macula_nat.net.stream import StreamListener

logger = logging.getLogger(__name__)

_BOTH: Final = frozenset((4, 6))

_RECEIVE_SIZE = 65536
"""Larger than any UDP payload, so the kernel never truncates a datagram."""

SOCKET_BUFFER: Final = 4 * 1024 * 1024
"""Bytes asked of the kernel for each endpoint's receive and send buffers. Linux's default
(about 208 KiB, some 170 datagrams of 1200 B) overflows under one QUIC transfer: a reader that
wakes a few hundred microseconds late loses datagrams, and QUIC takes them for congestion. The
kernel caps the request at ``net.core.rmem_max`` / ``wmem_max``; what it granted is logged."""

_LOST_ERRNOS = frozenset(
    {
        errno.ENETUNREACH,
        errno.EHOSTUNREACH,
        errno.EHOSTDOWN,
        errno.ENETDOWN,
        errno.ECONNREFUSED,
        errno.EPERM,
        errno.ENOBUFS,
    }
)
"""``sendto`` errors that mean "this datagram is lost", which UDP callers must expect anyway."""


def _address_from_socket(raw: object) -> Address:
    """Normalise a socket-module address (2-tuple for IPv4, 4-tuple for IPv6)."""
    if not isinstance(raw, tuple) or len(raw) < 2:
        raise ValueError(f"not an IP socket address: {raw!r}")
    return normalise_ip(str(raw[0]).split("%")[0]), int(raw[1])


def _received_address(raw: tuple[Any, ...]) -> Address:
    """A source address from ``recvfrom``: already canonical (the kernel formats it with
    ``inet_ntop``, as RFC 5952 asks), so only an IPv6 zone needs removing. Parsing it again
    cost about 15% of a busy observer's CPU."""
    ip: str = raw[0]
    if "%" in ip:
        ip = ip.split("%", 1)[0]
    return ip, raw[1]


_V4_MAPPED: Final = "::ffff:"
"""The prefix under which a dual-stack socket sends to and hears from IPv4 peers (RFC 4291)."""


def _unmapped(raw: tuple[Any, ...]) -> tuple[Any, ...]:
    """A socket address with an IPv4-mapped IPv6 address (``::ffff:192.0.2.7``, a dual-stack
    socket's IPv4 peer) as its plain IPv4 address; any other as it is."""
    ip = str(raw[0])
    if ip.startswith(_V4_MAPPED) and "." in ip:
        return (ip[len(_V4_MAPPED) :], raw[1])
    return raw


def _dual_received_address(raw: tuple[Any, ...]) -> Address:
    """:func:`_received_address` on a dual-stack socket: an IPv4 peer's IPv4-mapped address
    (``::ffff:192.0.2.7``, as the kernel formats it) becomes its plain IPv4 address."""
    ip: str = raw[0]
    if ip.startswith(_V4_MAPPED) and "." in ip:
        return ip[len(_V4_MAPPED) :], raw[1]
    return _received_address(raw)


_UDP_SEGMENT: Final = 103
"""``UDP_SEGMENT`` from ``linux/udp.h`` (the socket module does not name it): the segment size
of a GSO send, as a ``uint16`` control message at level ``IPPROTO_UDP``."""
_GSO_SUPPORTED: Final = sys.platform == "linux"
_GSO_REFUSED: Final = frozenset({errno.EIO, errno.EINVAL, errno.ENOPROTOOPT, errno.EOPNOTSUPP})
"""What a kernel without UDP GSO, or a device that cannot offload it (no checksum offload:
``EIO``), answers a segmented send with; nothing of that send left."""
_SEGMENT_SIZE: Final = struct.Struct("=H")
_UDP_GRO: Final = 104
"""``UDP_GRO`` from ``linux/udp.h``: the socket takes runs of same-sized datagrams of one flow
as one buffer (a GSO send's segments, or what the device's GRO coalesced), each read carrying
the segment size as an ``int`` control message, which the endpoint cuts apart again."""
_GRO_SPACE: Final = socket.CMSG_SPACE(4) if _GSO_SUPPORTED else 0
_gso_refusal_logged = False


def _log_gso_refused(local: Address, error: OSError) -> None:
    """Say once per process that GSO was refused (each endpoint then sends one by one)."""
    global _gso_refusal_logged
    if not _gso_refusal_logged:
        _gso_refusal_logged = True
        logger.info("UDP GSO refused on %s (%s): sending one datagram per call", local, error)


_CHECKED_DESTINATIONS = 1024
"""Destinations an endpoint remembers as already validated (the set is cleared when full)."""
_REPLY_FROM = 4096
"""Peers a dual-stack endpoint remembers the local address of; when full, the one heard from
longest ago is forgotten (a flood of new sources pushes out the quiet, not everyone at once)."""
_PKTINFO_SPACE: Final = socket.CMSG_SPACE(20)
"""Room for one ``in6_pktinfo`` (16-byte address, 4-byte interface index)."""


class RealUdpEndpoint(UdpEndpoint):
    """A bound non-blocking UDP socket, driven the way ``trio.socket`` drives one: try the
    call, and wait for the socket to become ready only when the kernel says it would block.

    The ``_nowait`` calls and :meth:`receive_batch` are the same calls without the wait (or
    with one wait for a whole batch), which ``trio.socket`` has no public way to make.
    """

    __slots__ = (
        "_checked",
        "_closed",
        "_dual",
        "_emptied",
        "_gro",
        "_gso",
        "_local_address",
        "_pending",
        "_reply_from",
        "_socket",
        "_version",
    )

    def __init__(self, sock: socket.socket, *, dual_stack: bool = False, gro: bool = False) -> None:
        sock.setblocking(False)
        self._socket = sock
        self._checked: dict[Address, Address] = {}
        """Destinations already validated -> the socket address they are sent to."""
        self._local_address = _address_from_socket(sock.getsockname())
        self._version = ip_version(self._local_address[0])
        self._dual = dual_stack
        self._reply_from: dict[tuple[str, int], bytes] = {}
        """A dual-stack endpoint's peers (socket-form address) -> the local address their
        latest datagram came to, as the ``in6_pktinfo`` that sends from it (see
        :meth:`_drain_ancillary`)."""
        self._closed = False
        self._gso = _GSO_SUPPORTED
        """Whether runs of datagrams leave as one GSO send (off for good once refused)."""
        self._gro = gro
        """Whether UDP GRO is on for ``sock``: a read may return several datagrams in one
        buffer (:meth:`RealUdpStack.bind` turns it on where the kernel has it)."""
        self._pending: deque[tuple[bytes, Address]] = deque()
        """Datagrams cut from a coalesced read that the caller did not take yet."""
        self._emptied = False
        """Whether the last read found the socket empty: the next batch then waits for
        readability first instead of trying a read that is most likely in vain."""

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<RealUdpEndpoint {self._local_address} {state}>"

    @property
    def local_address(self) -> Address:
        return self._local_address

    @property
    def ip_versions(self) -> frozenset[int]:
        return _BOTH if self._dual else frozenset((self._version,))

    async def send_to(self, data: bytes, address: Address) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            try:
                self.send_to_nowait(data, address)
            except trio.WouldBlock:
                await trio.lowlevel.wait_writable(self._socket)
            else:
                break
        await trio.lowlevel.cancel_shielded_checkpoint()

    def send_to_nowait(self, data: bytes, address: Address) -> None:
        if self._closed:
            raise trio.ClosedResourceError("endpoint is closed")
        check_datagram_size(data)
        if not self._send_one(data, self._checked_destination(address)):
            raise trio.WouldBlock

    def send_batch_nowait(self, datagrams: Sequence[bytes], address: Address) -> int:
        """Each run of equal-sized datagrams (the last may be shorter; see
        :func:`~macula_nat.net.segments.segment_runs`) leaves in one ``sendmsg`` with a
        ``UDP_SEGMENT`` size, which the kernel cuts into datagrams: the receiver sees what
        single sends would have given it. Where the kernel refuses GSO, this endpoint sends
        one datagram per call from then on (logged once per process)."""
        if self._closed:
            raise trio.ClosedResourceError("endpoint is closed")
        for data in datagrams:
            check_datagram_size(data)
        destination = self._checked_destination(address)
        if not self._gso or len(datagrams) < 2:
            return self._send_singly(datagrams, 0, destination)
        for start, stop in segment_runs([len(data) for data in datagrams]):
            if stop - start == 1:
                if not self._send_one(datagrams[start], destination):
                    return start
                continue
            try:
                self._send_run(datagrams[start:stop], destination)
            except BlockingIOError:
                return start
            except OSError as error:
                if error.errno in _GSO_REFUSED:
                    self._gso = False
                    _log_gso_refused(self._local_address, error)
                    return self._send_singly(datagrams, start, destination)
                if error.errno not in _LOST_ERRNOS:
                    raise
                logger.debug("%d datagrams to %s lost: %s", stop - start, destination, error)
        return len(datagrams)

    def _send_run(self, run: Sequence[bytes], destination: Address) -> None:
        """One GSO send of ``run`` (from the local address the peer last wrote to, on a
        dual-stack socket: see :meth:`_drain_ancillary`)."""
        ancillary = [(socket.IPPROTO_UDP, _UDP_SEGMENT, _SEGMENT_SIZE.pack(len(run[0])))]
        info = self._reply_from.get(destination) if self._dual else None
        if info is not None:
            ancillary.append((socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, info))
        try:
            self._socket.sendmsg(run, ancillary, 0, destination)
        except OSError as error:
            if info is None or error.errno != errno.EADDRNOTAVAIL:
                raise
            self._reply_from.pop(destination, None)  # that address is gone from the host
            self._socket.sendmsg(run, ancillary[:1], 0, destination)

    def _send_singly(self, datagrams: Sequence[bytes], start: int, destination: Address) -> int:
        """Send ``datagrams[start:]`` one per call; how many of all left."""
        for index in range(start, len(datagrams)):
            if not self._send_one(datagrams[index], destination):
                return index
        return len(datagrams)

    def _send_one(self, data: bytes, destination: Address) -> bool:
        """One ``sendto`` to a checked destination; False if it would block (nothing sent)."""
        try:
            info = self._reply_from.get(destination) if self._dual else None
            if info is None:
                self._socket.sendto(data, destination)
            else:
                self._send_from(data, destination, info)
        except BlockingIOError:
            return False
        except OSError as error:
            if error.errno not in _LOST_ERRNOS:
                raise
            logger.debug("datagram to %s lost: %s", destination, error)
        return True

    def _send_from(self, data: bytes, destination: Address, info: bytes) -> None:
        """Send from the local address in ``info``; from the kernel's choice once that
        address is gone from the host."""
        pktinfo = [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, info)]
        try:
            self._socket.sendmsg([data], pktinfo, 0, destination)
        except OSError as error:
            if error.errno != errno.EADDRNOTAVAIL:
                raise
            self._reply_from.pop(destination, None)
            self._socket.sendto(data, destination)

    def _checked_destination(self, address: Address) -> Address:
        if type(address) is tuple and type(address[0]) is str and type(address[1]) is int:
            known = self._checked.get(address)
            if known is not None:
                return known
        destination = destination_address(address)
        target = destination
        if ip_version(destination[0]) != self._version:
            if not self._dual:
                raise ValueError(f"{self._local_address} cannot send to {destination}")
            target = (_V4_MAPPED + destination[0], destination[1])
        if len(self._checked) >= _CHECKED_DESTINATIONS:
            self._checked.clear()
        self._checked[destination] = target
        return target

    async def receive_from(self) -> tuple[bytes, Address]:
        (datagram,) = await self.receive_batch(1)
        return datagram

    def receive_from_nowait(self) -> tuple[bytes, Address]:
        if self._closed:
            raise trio.ClosedResourceError("endpoint is closed")
        batch = self._drain(1)
        if not batch:
            raise trio.WouldBlock
        return batch[0]

    async def receive_batch(self, max_datagrams: int = READ_BATCH) -> list[tuple[bytes, Address]]:
        """Wait for readability at most once, then drain the socket with non-blocking reads:
        one scheduler round per batch, whatever its size (and, with UDP GRO, one read for each
        run of datagrams a GSO sender sent at once)."""
        if max_datagrams < 1:
            raise ValueError(f"max_datagrams must be at least 1, not {max_datagrams}")
        if self._closed:
            raise trio.ClosedResourceError("endpoint is closed")
        await trio.lowlevel.checkpoint_if_cancelled()
        batch = [] if self._emptied and not self._pending else self._drain(max_datagrams)
        if batch:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return batch
        while not batch:  # a wake-up without a datagram (another reader took it): wait again
            await trio.lowlevel.wait_readable(self._socket)
            batch = self._drain(max_datagrams)
        return batch

    def _drain(self, max_datagrams: int) -> list[tuple[bytes, Address]]:
        """Up to ``max_datagrams`` datagrams already waiting, in arrival order (those cut from
        an earlier coalesced read first)."""
        if self._gro or self._dual:
            return self._drain_ancillary(max_datagrams)
        batch: list[tuple[bytes, Address]] = []
        receive = self._socket.recvfrom
        address = _received_address
        self._emptied = False
        for _ in range(max_datagrams):
            try:
                data, source = receive(_RECEIVE_SIZE)
            except BlockingIOError:
                self._emptied = True
                break
            batch.append((data, address(source)))
        return batch

    def _drain_ancillary(self, max_datagrams: int) -> list[tuple[bytes, Address]]:
        """:meth:`_drain` with each read's control messages, on a GRO or dual-stack socket.

        - **GRO**: a read whose control message names a segment size is that many-byte
          datagrams back to back (the last may be shorter); what exceeds ``max_datagrams``
          waits in ``_pending`` for the next call.
        - **Dual stack**, bound to the wildcard: each datagram's destination address
          (``IPV6_PKTINFO``) is remembered for its source, and what is sent there goes out
          from it. On a host with several addresses (an RFC 5780 gateway's two) the kernel
          would otherwise pick the source itself, and a peer behind a stateful firewall drops
          an answer from an address it never sent to. Simulated endpoints answer from the
          address asked, and so do these.
        """
        pending = self._pending
        batch: list[tuple[bytes, Address]] = []
        while pending and len(batch) < max_datagrams:
            batch.append(pending.popleft())
        receive = self._socket.recvmsg
        space = (_GRO_SPACE if self._gro else 0) + (_PKTINFO_SPACE if self._dual else 0)
        address = _dual_received_address if self._dual else _received_address
        reply_from = self._reply_from
        self._emptied = False
        while len(batch) < max_datagrams:
            try:
                data, ancillary, _, source = receive(_RECEIVE_SIZE, space)
            except BlockingIOError:
                self._emptied = True
                break
            size = None
            for level, kind, value in ancillary:
                if level == socket.IPPROTO_UDP and kind == _UDP_GRO and len(value) >= 4:
                    size = int.from_bytes(value[:4], sys.byteorder)
                elif level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
                    peer = (source[0], source[1])
                    if reply_from.pop(peer, None) is None and len(reply_from) >= _REPLY_FROM:
                        del reply_from[next(iter(reply_from))]  # the one heard from longest ago
                    reply_from[peer] = value[:16] + bytes(4)  # any interface
            sender = address(source)
            if size is None or size >= len(data):
                batch.append((data, sender))
                continue
            for segment in split_segments(data, size):
                if len(batch) < max_datagrams:
                    batch.append((segment, sender))
                else:
                    pending.append((segment, sender))
        return batch

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        trio.lowlevel.notify_closing(self._socket)  # a task waiting on it raises Closed
        self._socket.close()


def _enable_gro(sock: socket.socket) -> bool:
    """Ask for UDP GRO on ``sock``; whether the kernel agreed (before 5.0 it does not)."""
    try:
        sock.setsockopt(socket.IPPROTO_UDP, _UDP_GRO, 1)
    except OSError as error:
        logger.debug("UDP GRO not enabled: %s", error)
        return False
    return True


class RealUdpStack(UdpStack):
    """This machine's network stack.

    ``addresses`` defaults to what the kernel reports (see
    :func:`~macula_nat.net.local_addresses.discover_local_addresses`); pass them to override.
    IPv6 endpoints are IPv6-only (``IPV6_V6ONLY``), as simulated ones are, unless bound
    ``dual_stack``: then ``IPV6_V6ONLY`` is off and the endpoint translates IPv4-mapped
    addresses both ways (see :meth:`UdpStack.bind`).
    """

    __slots__ = ("_addresses",)

    def __init__(self, addresses: Sequence[str] | None = None) -> None:
        found = discover_local_addresses() if addresses is None else addresses
        self._addresses = tuple(normalise_ip(ip) for ip in found)

    @property
    def addresses(self) -> tuple[str, ...]:
        return self._addresses

    async def bind(
        self, address: Address = (ANY_IPV4, 0), *, dual_stack: bool = False
    ) -> RealUdpEndpoint:
        ip, port = normalise_address(address)
        if dual_stack:
            check_dual_stack(ip)
        family = address_family(ip)
        await trio.lowlevel.checkpoint_if_cancelled()
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if dual_stack else 1)
            if dual_stack:  # each datagram's destination: answers go out from it
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            granted = _size_buffers(sock)
            gro = _GSO_SUPPORTED and _enable_gro(sock)
            sock.bind((ip, port))  # a numeric address: nothing to resolve, nothing to wait for
        except BaseException:
            sock.close()
            raise
        endpoint = RealUdpEndpoint(sock, dual_stack=dual_stack, gro=gro)
        await trio.lowlevel.cancel_shielded_checkpoint()
        logger.debug(
            "bound %s (buffers granted: receive %d, send %d bytes)",
            endpoint.local_address,
            *granted,
        )
        return endpoint

    async def connect_stream(self, address: Address) -> tuple[trio.abc.Stream, Address]:
        ip, port = destination_address(address)
        stream = await trio.open_tcp_stream(ip, port)
        local = stream.socket.getsockname()
        return stream, normalise_address((local[0], local[1]))

    async def listen_stream(self, address: Address, *, dual_stack: bool = False) -> StreamListener:
        ip, port = normalise_address(address)
        if not dual_stack:
            [listener] = await trio.open_tcp_listeners(port, host=ip)
            return RealStreamListener(listener)
        check_dual_stack(ip)  # trio's listeners are IPV6_V6ONLY: this one is not
        await trio.lowlevel.checkpoint_if_cancelled()
        sock = trio.socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            await sock.bind((ip, port))
            sock.listen(socket.SOMAXCONN)
        except BaseException:
            sock.close()
            raise
        return RealStreamListener(trio.SocketListener(sock))


class RealStreamListener(StreamListener):
    """A kernel TCP listening socket."""

    __slots__ = ("_listener",)

    def __init__(self, listener: trio.SocketListener) -> None:
        self._listener = listener

    @property
    def local_address(self) -> Address:
        host, port = self._listener.socket.getsockname()[:2]
        return normalise_address((host, port))

    async def accept(self) -> tuple[trio.abc.Stream, Address]:
        while True:  # a connection reset before it could be named is skipped, as the kernel's
            stream = await self._listener.accept()
            try:
                peer = stream.socket.getpeername()
                return stream, _address_from_socket(_unmapped(peer))
            except (OSError, ValueError):
                await trio.aclose_forcefully(stream)

    async def aclose(self) -> None:
        await self._listener.aclose()


def _size_buffers(sock: socket.socket) -> tuple[int, int]:
    """Ask for :data:`SOCKET_BUFFER` bytes of receive and send buffer (best effort: the kernel
    caps the request, and refusal is no error); what the kernel granted (Linux reports double
    the usable size, its bookkeeping included)."""
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
        except OSError as error:
            logger.debug("socket buffer option %d not set: %s", option, error)
    return (
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
    )
