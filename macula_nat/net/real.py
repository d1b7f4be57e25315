"""The interface on real sockets: ``trio.socket`` UDP, IPv4 and IPv6."""

from __future__ import annotations

import errno
import logging
import socket
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
        "_local_address",
        "_reply_from",
        "_socket",
        "_version",
    )

    def __init__(self, sock: socket.socket, *, dual_stack: bool = False) -> None:
        sock.setblocking(False)
        self._socket = sock
        self._checked: dict[Address, Address] = {}
        """Destinations already validated -> the socket address they are sent to."""
        self._local_address = _address_from_socket(sock.getsockname())
        self._version = ip_version(self._local_address[0])
        self._dual = dual_stack
        self._reply_from: dict[tuple[str, int], bytes] = {}
        """A dual-stack endpoint's peers (socket-form address) -> the local address their
        latest datagram came to, as the ``in6_pktinfo`` that sends from it (see ``_drain``)."""
        self._closed = False

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
        destination = self._checked_destination(address)
        try:
            info = self._reply_from.get(destination) if self._dual else None
            if info is None:
                self._socket.sendto(data, destination)
            else:
                self._send_from(data, destination, info)
        except BlockingIOError:
            raise trio.WouldBlock from None
        except OSError as error:
            if error.errno not in _LOST_ERRNOS:
                raise
            logger.debug("datagram to %s lost: %s", destination, error)

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
        if self._dual:
            batch = self._drain_dual(1)
            if not batch:
                raise trio.WouldBlock
            return batch[0]
        try:
            data, source = self._socket.recvfrom(_RECEIVE_SIZE)
        except BlockingIOError:
            raise trio.WouldBlock from None
        return data, _received_address(source)

    async def receive_batch(self, max_datagrams: int = READ_BATCH) -> list[tuple[bytes, Address]]:
        """Wait for readability at most once, then drain the socket with non-blocking reads:
        one scheduler round per batch, whatever its size."""
        if max_datagrams < 1:
            raise ValueError(f"max_datagrams must be at least 1, not {max_datagrams}")
        if self._closed:
            raise trio.ClosedResourceError("endpoint is closed")
        await trio.lowlevel.checkpoint_if_cancelled()
        batch = self._drain(max_datagrams)
        if batch:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return batch
        while not batch:  # a wake-up without a datagram (another reader took it): wait again
            await trio.lowlevel.wait_readable(self._socket)
            batch = self._drain(max_datagrams)
        return batch

    def _drain(self, max_datagrams: int) -> list[tuple[bytes, Address]]:
        """Up to ``max_datagrams`` datagrams already waiting, in arrival order."""
        if self._dual:
            return self._drain_dual(max_datagrams)
        batch: list[tuple[bytes, Address]] = []
        receive = self._socket.recvfrom
        address = _dual_received_address if self._dual else _received_address
        for _ in range(max_datagrams):
            try:
                data, source = receive(_RECEIVE_SIZE)
            except BlockingIOError:
                break
            batch.append((data, address(source)))
        return batch

    def _drain_dual(self, max_datagrams: int) -> list[tuple[bytes, Address]]:
        """:meth:`_drain` on a dual-stack socket, bound to the wildcard: each datagram's
        destination address (``IPV6_PKTINFO``) is remembered for its source, and what is sent
        there goes out from it. On a host with several addresses (an RFC 5780 gateway's two)
        the kernel would otherwise pick the source itself, and a peer behind a stateful
        firewall drops an answer from an address it never sent to. Simulated endpoints answer
        from the address asked, and so do these."""
        batch: list[tuple[bytes, Address]] = []
        receive = self._socket.recvmsg
        reply_from = self._reply_from
        for _ in range(max_datagrams):
            try:
                data, ancillary, _, source = receive(_RECEIVE_SIZE, _PKTINFO_SPACE)
            except BlockingIOError:
                break
            peer = (source[0], source[1])
            for level, kind, info in ancillary:
                if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
                    if reply_from.pop(peer, None) is None and len(reply_from) >= _REPLY_FROM:
                        del reply_from[next(iter(reply_from))]  # the one heard from longest ago
                    reply_from[peer] = info[:16] + bytes(4)  # any interface
            batch.append((data, _dual_received_address(source)))
        return batch

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        trio.lowlevel.notify_closing(self._socket)  # a task waiting on it raises Closed
        self._socket.close()


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
            sock.bind((ip, port))  # a numeric address: nothing to resolve, nothing to wait for
        except BaseException:
            sock.close()
            raise
        endpoint = RealUdpEndpoint(sock, dual_stack=dual_stack)
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
