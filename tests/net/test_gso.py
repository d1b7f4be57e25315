"""The real endpoint's segmentation offload (UDP GSO out, UDP GRO in): what a receiver reads is
what single sends would have given it, in order, nothing lost; a kernel that refuses GSO gets
single sends from then on; a coalesced read is cut apart and what exceeds the batch waits."""

from __future__ import annotations

import errno
import logging
import os
import socket
import struct
import sys
from typing import cast

import pytest
import trio

from macula_nat.net import Address, RealUdpStack, real
from macula_nat.net.real import RealUdpEndpoint

LOOPBACK = "127.0.0.1"
linux_only = pytest.mark.skipif(sys.platform != "linux", reason="UDP GSO and GRO are Linux's")


def output_step(count: int, size: int, last: int) -> list[bytes]:
    """A QUIC output step's shape: ``count`` datagrams of ``size`` and a shorter one."""
    return [os.urandom(size) for _ in range(count)] + [os.urandom(last)]


async def receive_all(endpoint: RealUdpEndpoint, count: int) -> list[bytes]:
    received: list[bytes] = []
    with trio.fail_after(5):
        while len(received) < count:
            received += [data for data, _ in await endpoint.receive_batch()]
    return received


@linux_only
@pytest.mark.parametrize("gro", [True, False])
@pytest.mark.parametrize("loopback", [LOOPBACK, "::1"])
async def test_a_batch_arrives_as_the_same_datagrams_in_order(gro: bool, loopback: str) -> None:
    stack = RealUdpStack([loopback])
    async with (
        await stack.bind((loopback, 0)) as sender,
        await stack.bind((loopback, 0)) as receiver,
    ):
        assert isinstance(sender, RealUdpEndpoint) and isinstance(receiver, RealUdpEndpoint)
        receiver._gro = receiver._gro and gro
        if not gro:
            receiver._socket.setsockopt(socket.IPPROTO_UDP, real._UDP_GRO, 0)
        datagrams = (
            output_step(100, 1200, 300)
            + output_step(3, 1400, 1)
            + [b"solo"]
            + output_step(70, 900, 899)
        )

        assert sender.send_batch_nowait(datagrams, receiver.local_address) == len(datagrams)

        assert sender._gso, "loopback takes GSO on any kernel since 4.18"
        assert await receive_all(receiver, len(datagrams)) == datagrams
        assert receiver._pending == type(receiver._pending)()


@linux_only
async def test_coalesced_reads_beyond_the_batch_wait_for_the_next_call() -> None:
    stack = RealUdpStack([LOOPBACK])
    async with (
        await stack.bind((LOOPBACK, 0)) as sender,
        await stack.bind((LOOPBACK, 0)) as receiver,
    ):
        assert isinstance(sender, RealUdpEndpoint) and isinstance(receiver, RealUdpEndpoint)
        assert receiver._gro, "loopback takes GRO on any kernel since 5.0"
        datagrams = output_step(40, 1000, 10)
        sender.send_batch_nowait(datagrams, receiver.local_address)
        await trio.sleep(0.05)

        first = await receiver.receive_batch(7)
        one = receiver.receive_from_nowait()
        rest = await receive_all(receiver, len(datagrams) - 8)

        assert [data for data, _ in first] == datagrams[:7]
        assert one == (datagrams[7], sender.local_address)
        assert rest == datagrams[8:]
        with pytest.raises(trio.WouldBlock):
            receiver.receive_from_nowait()


class GsoSocket:
    """Enough of a non-blocking UDP socket for ``RealUdpEndpoint``'s sends: ``sendmsg`` fails
    with ``refuse`` (an errno) or, after ``room`` calls, would block; every send is logged."""

    def __init__(self, *, refuse: int | None = None, room: int = 1000) -> None:
        self.refuse = refuse
        self.room = room
        self.calls: list[tuple[str, list[bytes]]] = []

    def getsockname(self) -> tuple[str, int]:
        return ("192.0.2.1", 4000)

    def setblocking(self, flag: bool) -> None:
        pass

    def sendmsg(
        self, buffers: list[bytes], ancillary: list[tuple[int, int, bytes]], flags: int, to: Address
    ) -> int:
        if self.refuse is not None:
            raise OSError(self.refuse, "simulated")
        if self.room == 0:
            raise BlockingIOError(errno.EAGAIN, "simulated")
        self.room -= 1
        [(level, kind, size)] = ancillary
        assert (level, kind) == (socket.IPPROTO_UDP, real._UDP_SEGMENT)
        assert struct.unpack("=H", size)[0] == len(buffers[0])
        self.calls.append(("sendmsg", list(buffers)))
        return sum(map(len, buffers))

    def sendto(self, data: bytes, to: Address) -> int:
        self.calls.append(("sendto", [data]))
        return len(data)

    def close(self) -> None:
        pass


def endpoint(sock: GsoSocket) -> RealUdpEndpoint:
    endpoint = RealUdpEndpoint(cast(socket.socket, sock))
    endpoint._gso = True  # as on Linux, wherever the test runs
    return endpoint


def sent(sock: GsoSocket) -> list[bytes]:
    return [data for _, buffers in sock.calls for data in buffers]


@pytest.mark.parametrize("code", sorted(real._GSO_REFUSED))
def test_a_kernel_refusing_gso_gets_single_sends_from_then_on_logged_once(
    code: int, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(real, "_gso_refusal_logged", False)
    sock = GsoSocket(refuse=code)
    first, second = endpoint(sock), endpoint(sock)
    datagrams = output_step(5, 1200, 100)

    with caplog.at_level(logging.INFO, logger=real.__name__):
        assert first.send_batch_nowait(datagrams, ("192.0.2.9", 9)) == 6
        assert first.send_batch_nowait(datagrams, ("192.0.2.9", 9)) == 6
        assert second.send_batch_nowait(datagrams, ("192.0.2.9", 9)) == 6

    assert sent(sock) == datagrams * 3
    assert {kind for kind, _ in sock.calls} == {"sendto"}
    assert not first._gso and not second._gso
    assert len([r for r in caplog.records if "GSO refused" in r.getMessage()]) == 1


def test_a_full_buffer_stops_the_batch_at_the_run_that_did_not_fit() -> None:
    sock = GsoSocket(room=1)
    datagrams = output_step(3, 1200, 100) + output_step(2, 1300, 5)

    assert endpoint(sock).send_batch_nowait(datagrams, ("192.0.2.9", 9)) == 4
    assert sock.calls == [("sendmsg", datagrams[:4])]


def test_a_lone_datagram_and_a_disabled_endpoint_use_plain_sends() -> None:
    sock = GsoSocket()
    plain = endpoint(sock)
    assert plain.send_batch_nowait([b"one"], ("192.0.2.9", 9)) == 1
    plain._gso = False
    assert plain.send_batch_nowait([b"a", b"b"], ("192.0.2.9", 9)) == 2
    assert sock.calls == [("sendto", [b"one"]), ("sendto", [b"a"]), ("sendto", [b"b"])]


def test_a_batch_with_an_oversized_datagram_sends_nothing() -> None:
    sock = GsoSocket()
    with pytest.raises(ValueError, match="exceeds"):
        endpoint(sock).send_batch_nowait([b"x", bytes(70000)], ("192.0.2.9", 9))
    assert sock.calls == []


async def test_a_datagram_after_a_read_that_found_the_socket_empty_is_still_received() -> None:
    stack = RealUdpStack([LOOPBACK])
    async with (
        await stack.bind((LOOPBACK, 0)) as sender,
        await stack.bind((LOOPBACK, 0)) as receiver,
    ):
        assert isinstance(receiver, RealUdpEndpoint)
        with pytest.raises(trio.WouldBlock):
            receiver.receive_from_nowait()  # the socket is empty: the next batch waits first
        await sender.send_to(b"late", receiver.local_address)
        await trio.sleep(0.01)  # already waiting when the batch is asked for

        with trio.fail_after(5):
            assert await receiver.receive_batch() == [(b"late", sender.local_address)]


@linux_only
@pytest.mark.parametrize("peer_ip", [LOOPBACK, "::1"])
async def test_a_dual_stack_endpoint_answers_a_batch_from_the_address_asked(peer_ip: str) -> None:
    stack = RealUdpStack([LOOPBACK, "::1"])
    async with (
        await stack.bind(("::", 0), dual_stack=True) as dual,
        await stack.bind((peer_ip, 0)) as peer,
    ):
        assert isinstance(dual, RealUdpEndpoint) and isinstance(peer, RealUdpEndpoint)
        asked = (peer_ip, dual.local_address[1])
        await peer.send_to(b"hello", asked)
        assert [data for data, _ in await dual.receive_batch()] == [b"hello"]
        assert dual._reply_from, "the destination of the peer's datagram is remembered"
        datagrams = output_step(30, 1200, 7)

        assert dual.send_batch_nowait(datagrams, peer.local_address) == len(datagrams)

        received: list[tuple[bytes, Address]] = []
        with trio.fail_after(5):
            while len(received) < len(datagrams):
                received += await peer.receive_batch()
        assert [data for data, _ in received] == datagrams
        assert {source for _, source in received} == {asked}
