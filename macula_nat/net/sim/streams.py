"""TCP on the simulated internet: in-memory streams routed through the NAT boxes.

Enough TCP for a relay over TCP/TLS: a host listens at one of its addresses (at a wildcard: at
each of its addresses of that version, of both with ``dual_stack``); another host
connects if the listener's network is reached by going out through the NAT boxes in front of
the connecting host (outbound only, as through real NATs: nobody connects in to a host behind
one). The listener sees the connection come from the outermost box's public address and a
fresh port, as masquerade makes it. A box whose ``udp_blocked`` firewall drops every datagram
lets streams pass: that is the network the relay over TCP is for.

The streams are Trio's in-memory pairs: no latency, no loss, no window. They check what
happens, not how fast; timing comes from the real stack and the namespace lab.
"""

from __future__ import annotations

import errno
import os
import random
from typing import TYPE_CHECKING, Final

import trio
import trio.testing

from macula_nat.net.address import Address, ip_version, is_unspecified
from macula_nat.net.sim.nat_box import NatBox
from macula_nat.net.stream import StreamListener

if TYPE_CHECKING:
    from macula_nat.net.sim.host import SimHost

__all__ = ["SimStreamListener", "StreamTable"]

BACKLOG: Final = 128
"""Connections a listener holds before it accepts them (more are refused, as a full queue)."""
_MAX_HOPS: Final = 16
_PORTS: Final = (32768, 60999)


def _error(code: int, what: object) -> OSError:
    return OSError(code, f"{os.strerror(code)}: {what}")


class SimStreamListener(StreamListener):
    """A listening address on the simulated internet; see the module docstring."""

    def __init__(self, table: StreamTable, address: Address) -> None:
        self._table = table
        self._address = address
        self._send, self._receive = trio.open_memory_channel[tuple[trio.abc.Stream, Address]](
            BACKLOG
        )

    def __repr__(self) -> str:
        return f"<SimStreamListener {self._address[0]}:{self._address[1]}>"

    @property
    def local_address(self) -> Address:
        return self._address

    async def accept(self) -> tuple[trio.abc.Stream, Address]:
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise trio.ClosedResourceError from None

    def _offer(self, stream: trio.abc.Stream, peer: Address) -> bool:
        try:
            self._send.send_nowait((stream, peer))
        except (trio.WouldBlock, trio.ClosedResourceError):
            return False
        return True

    async def aclose(self) -> None:
        self._table._forget(self)
        self._send.close()
        self._receive.close()
        await trio.lowlevel.checkpoint()


class StreamTable:
    """The listeners of one simulated internet, by address."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._listeners: dict[Address, SimStreamListener] = {}

    def listen(
        self, host: SimHost, address: Address, *, dual_stack: bool = False
    ) -> SimStreamListener:
        """A listener at ``address``; at a wildcard, at each of the host's addresses of its
        version (both with ``dual_stack``), named by the first of them."""
        ip, port = address
        ips = [ip]
        if is_unspecified(ip):
            version = ip_version(ip)
            ips = [a for a in host.addresses if dual_stack or ip_version(a) == version]
            if not ips:
                raise _error(errno.EADDRNOTAVAIL, address)
        if any(each not in host.addresses for each in ips):
            raise _error(errno.EADDRNOTAVAIL, address)
        if port == 0:
            port = self._free_port(ips)
        if any((each, port) in self._listeners for each in ips):
            raise _error(errno.EADDRINUSE, (ip, port))
        listener = SimStreamListener(self, (ips[0], port))
        for each in ips:
            self._listeners[(each, port)] = listener
        return listener

    def connect(self, host: SimHost, destination: Address) -> tuple[trio.abc.Stream, Address]:
        listener = self._listeners.get(destination)
        if listener is None:
            raise _error(errno.ECONNREFUSED, destination)
        local, seen_as = self._path(host, destination[0])
        ours, theirs = trio.testing.memory_stream_pair()
        if not listener._offer(theirs, seen_as):
            raise _error(errno.ECONNREFUSED, destination)
        return ours, local

    def _path(self, host: SimHost, destination_ip: str) -> tuple[Address, Address]:
        """This end's address, and the address the far end sees (after every NAT box)."""
        interface = host._route("0.0.0.0", destination_ip)
        if interface is None:
            raise _error(errno.ENETUNREACH, destination_ip)
        local = (interface.address, self._rng.randint(*_PORTS))
        seen_as = local
        network = interface.network
        for _ in range(_MAX_HOPS):
            if network._holds(destination_ip):
                return local, seen_as
            box = network.gateway
            if box is None:
                break
            if isinstance(box, NatBox):  # a firewall passes the address through unchanged
                seen_as = (box.public_addresses[0], self._rng.randint(*_PORTS))
            network = box._wan
        raise _error(errno.ENETUNREACH, destination_ip)

    def _free_port(self, ips: list[str]) -> int:
        for _ in range(64):
            port = self._rng.randint(*_PORTS)
            if all((ip, port) not in self._listeners for ip in ips):
                return port
        raise _error(errno.EADDRINUSE, (ips[0], 0))

    def _forget(self, listener: SimStreamListener) -> None:
        for address in [a for a, held in self._listeners.items() if held is listener]:
            del self._listeners[address]
