"""What each implementation adds to the shared contract of the non-waiting operations: the
simulator's send buffer, the real socket's buffer sizes, the defaults of the interface."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import trio

from macula_nat.net import Address, RealUdpStack, UdpEndpoint
from macula_nat.net.real import SOCKET_BUFFER, RealUdpEndpoint
from macula_nat.net.sim import open_internet
from macula_nat.net.sim.endpoint import DEFAULT_SEND_BUFFER


async def test_sim_send_to_nowait_would_block_once_its_buffer_is_full() -> None:
    async with open_internet(seed=5) as internet:
        host = internet.add_host(["203.0.113.7"], receive_buffer=2 * DEFAULT_SEND_BUFFER)
        a, b = await host.bind(("203.0.113.7", 0)), await host.bind(("203.0.113.7", 0))
        for i in range(DEFAULT_SEND_BUFFER):
            a.send_to_nowait(b"%d" % i, b.local_address)
        with pytest.raises(trio.WouldBlock):
            a.send_to_nowait(b"full", b.local_address)

        await a.send_to(b"waited", b.local_address)  # waiting empties the buffer
        a.send_to_nowait(b"again", b.local_address)

        received: list[bytes] = []
        with trio.fail_after(5):
            while len(received) < DEFAULT_SEND_BUFFER + 2:
                received += [data for data, _ in await b.receive_batch(DEFAULT_SEND_BUFFER + 2)]
        assert received == [b"%d" % i for i in range(DEFAULT_SEND_BUFFER)] + [b"waited", b"again"]


async def test_sim_receive_empties_the_send_buffer_too() -> None:
    async with open_internet(seed=5) as internet:
        host = internet.add_host(["203.0.113.7"])
        a, b = await host.bind(("203.0.113.7", 0)), await host.bind(("203.0.113.7", 0))
        for _ in range(DEFAULT_SEND_BUFFER):
            a.send_to_nowait(b"x", b.local_address)
        await b.send_to(b"wake", a.local_address)
        await a.receive_batch()
        a.send_to_nowait(b"fits", b.local_address)


def _rmem_max() -> int | None:
    path = Path("/proc/sys/net/core/rmem_max")
    return int(path.read_text()) if path.exists() else None


async def test_real_endpoint_asks_for_large_socket_buffers() -> None:
    cap = _rmem_max()
    if cap is None:
        pytest.skip("no /proc/sys/net/core/rmem_max: not Linux")
    async with await RealUdpStack(["127.0.0.1"]).bind(("127.0.0.1", 0)) as endpoint:
        assert isinstance(endpoint, RealUdpEndpoint)
        granted = endpoint._socket.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    assert granted >= min(SOCKET_BUFFER, cap)  # Linux grants double what it was asked


class _Plain(UdpEndpoint):
    """An endpoint with only the required methods: the interface's defaults."""

    def __init__(self) -> None:
        self.inbox = [(b"one", ("192.0.2.1", 1)), (b"two", ("192.0.2.1", 1))]

    @property
    def local_address(self) -> Address:
        return ("192.0.2.2", 2)

    async def send_to(self, data: bytes, address: Address) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_from(self) -> tuple[bytes, Address]:
        await trio.lowlevel.checkpoint()
        return self.inbox.pop(0)

    def close(self) -> None:
        pass


async def test_defaults_send_by_waiting_and_batch_one_at_a_time() -> None:
    plain = _Plain()
    with pytest.raises(trio.WouldBlock):
        plain.send_to_nowait(b"x", ("192.0.2.1", 1))
    with pytest.raises(trio.WouldBlock):
        plain.receive_from_nowait()
    assert await plain.receive_batch() == [(b"one", ("192.0.2.1", 1))]
    assert await plain.receive_batch() == [(b"two", ("192.0.2.1", 1))]
