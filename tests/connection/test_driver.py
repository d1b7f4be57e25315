"""The QUIC connection core on the simulated internet (mock clock) and on loopback."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from aioquic.quic.packet import QuicHeader, QuicPacketType

from macula_nat.connection import (
    Connection,
    ConnectionClosed,
    ConnectionConfig,
    HandshakeTimeout,
    PeerAuthenticationFailed,
    connect,
    driver,
    listen,
    node_certificate,
    peer_node_id,
)
from macula_nat.connection.backend import BackendName
from macula_nat.connection.driver import parse_header
from macula_nat.connection.quic_aioquic import AioquicConnection
from macula_nat.connection.quic_qh3 import Qh3Connection
from macula_nat.identity import NodeKey
from macula_nat.net import Address, UdpEndpoint
from macula_nat.net.real import RealUdpStack
from macula_nat.net.sim import Internet, LinkProfile, open_internet

CLIENT = NodeKey.generate()
SERVER = NodeKey.generate()
STRANGER = NodeKey.generate()
PROBE_SIZE = 1280
"""Datagrams larger than this are path-MTU probes (qh3 sends some; QUIC's minimum is 1200)."""


async def pair(
    internet: Internet, link: LinkProfile | None = None
) -> tuple[UdpEndpoint, UdpEndpoint]:
    """A client's and a server's endpoint on hosts of their own (``link``: each host's)."""
    client_host = internet.add_host(name="client", link=link)
    server_host = internet.add_host(name="server", link=link)
    client = await client_host.bind((client_host.addresses[0], 0))
    server = await server_host.bind((server_host.addresses[0], 4433))
    return client, server


@asynccontextmanager
async def connected(
    client_ep: UdpEndpoint, server_ep: UdpEndpoint, config: ConnectionConfig
) -> AsyncIterator[tuple[Connection, Connection]]:
    """CLIENT's connection from ``client_ep`` to SERVER at ``server_ep``, and SERVER's side."""
    async with (
        listen(server_ep, SERVER, [CLIENT.node_id], config=config) as listener,
        connect(client_ep, server_ep.local_address, CLIENT, SERVER.node_id, config=config) as conn,
    ):
        yield conn, await listener.accept()


def test_certificate_carries_the_node_id() -> None:
    assert peer_node_id(node_certificate(CLIENT)) == CLIENT.node_id


async def test_messages_both_ways_and_info(
    autojump_clock: trio.testing.MockClock, config: ConnectionConfig
) -> None:
    async with open_internet() as internet:
        client_ep, server_ep = await pair(internet)
        async with listen(server_ep, SERVER, [CLIENT.node_id], config=config) as listener:
            async with connect(
                client_ep, server_ep.local_address, CLIENT, SERVER.node_id, config=config
            ) as conn:
                accepted = await listener.accept()
                await conn.send_message(b"hello")
                await conn.send_message(b"")
                assert await accepted.receive_message() == b"hello"
                assert await accepted.receive_message() == b""
                await accepted.send_message(b"x" * 100_000)
                assert await conn.receive_message() == b"x" * 100_000
                info = conn.info()
                assert info.peer_id == SERVER.node_id
                assert info.remote_address == server_ep.local_address
                assert info.rtt > 0
                assert accepted.info().peer_id == CLIENT.node_id
            with pytest.raises(ConnectionClosed):
                await accepted.receive_message()


async def test_a_stream_carries_one_mebibyte(
    autojump_clock: trio.testing.MockClock, config: ConnectionConfig
) -> None:
    payload = os.urandom(1 << 20)
    async with open_internet() as internet:
        client_ep, server_ep = await pair(internet)
        async with (
            listen(server_ep, SERVER, [CLIENT.node_id], config=config) as listener,
            connect(
                client_ep, server_ep.local_address, CLIENT, SERVER.node_id, config=config
            ) as conn,
        ):
            accepted = await listener.accept()
            stream = await conn.open_stream()
            received = bytearray()

            async def echo_back() -> None:
                peer_stream = await accepted.accept_stream()
                for _ in range(10_000):
                    chunk = await peer_stream.receive_some()
                    if not chunk:
                        break
                    received.extend(chunk)
                await peer_stream.send_all(b"done")
                await peer_stream.aclose()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(echo_back)
                await stream.send_all(payload)
                await stream.send_eof()
                assert await stream.receive_some() == b"done"
                assert await stream.receive_some() == b""
            assert bytes(received) == payload


@pytest.mark.parametrize("side", ["client expects another", "server allows another"])
async def test_wrong_node_fails_on_both_sides(
    autojump_clock: trio.testing.MockClock, side: str, config: ConnectionConfig
) -> None:
    expected = STRANGER.node_id if side == "client expects another" else SERVER.node_id
    allowed = (CLIENT,) if side == "client expects another" else (STRANGER,)
    async with open_internet() as internet:
        client_ep, server_ep = await pair(internet)
        async with listen(
            server_ep, SERVER, [k.node_id for k in allowed], config=config
        ) as listener:
            with pytest.raises(PeerAuthenticationFailed):
                async with connect(
                    client_ep, server_ep.local_address, CLIENT, expected, config=config
                ):
                    pytest.fail("connected to the wrong node")
            await trio.sleep(5)
            assert any(isinstance(f, PeerAuthenticationFailed) for f in listener.failures)
            with trio.move_on_after(1) as scope:
                await listener.accept()
            assert scope.cancelled_caught


class CountingEndpoint(UdpEndpoint):
    """An endpoint that counts what is sent through it (``probes``: those of a path-MTU probe's
    size); while ``gate`` is set, sends wait for it first."""

    def __init__(self, inner: UdpEndpoint) -> None:
        self.inner = inner
        self.sent = 0
        self.probes = 0
        self.gate: trio.Event | None = None

    @property
    def local_address(self) -> Address:
        return self.inner.local_address

    async def send_to(self, data: bytes, address: Address) -> None:
        if self.gate is not None:
            await self.gate.wait()
        await self.inner.send_to(data, address)
        self.sent += 1
        self.probes += len(data) > PROBE_SIZE

    async def receive_from(self) -> tuple[bytes, Address]:
        return await self.inner.receive_from()

    def close(self) -> None:
        self.inner.close()


async def test_an_answer_carries_the_ack_of_its_request(
    autojump_clock: trio.testing.MockClock,
    config: ConnectionConfig,
) -> None:
    """At 20 ms round trip (far beyond aioquic's 1 ms ACK delay) a request and its answer are
    two datagrams on aioquic: each ACK rides with the data that follows, not in a datagram of
    its own."""
    rounds = 50
    async with open_internet() as internet:
        link = LinkProfile(latency=0.005)
        client_host = internet.add_host(name="client", link=link)
        server_host = internet.add_host(name="server", link=link)
        client_ep = CountingEndpoint(await client_host.bind((client_host.addresses[0], 0)))
        server_ep = CountingEndpoint(await server_host.bind((server_host.addresses[0], 0)))
        async with (
            listen(server_ep, SERVER, [CLIENT.node_id], config=config) as listener,
            connect(
                client_ep, server_ep.local_address, CLIENT, SERVER.node_id, config=config
            ) as conn,
        ):
            accepted = await listener.accept()
            await conn.send_message(b"warm up")
            await accepted.send_message(await accepted.receive_message())
            await conn.receive_message()
            before = client_ep.sent + server_ep.sent - client_ep.probes - server_ep.probes
            for round_ in range(rounds):
                await conn.send_message(b"request %d" % round_)
                await accepted.send_message(await accepted.receive_message())
                assert await conn.receive_message() == b"request %d" % round_
            # aioquic: the ACK rides with the answer; qh3's core schedules its ACKs itself (one
            # datagram of its own each way per round trip), and its path-MTU probes (one here
            # or there, not per round) are not counted
            per_round = 2 if config.quic_backend == "aioquic" else 4
            sent = client_ep.sent + server_ep.sent - client_ep.probes - server_ep.probes
            assert sent - before <= per_round * rounds + 2


async def test_a_message_read_and_not_answered_is_acknowledged_within_the_ack_delay(
    autojump_clock: trio.testing.MockClock,
    config: ConnectionConfig,
) -> None:
    """The driver leaves the output step after input to the task the input woke (its answer
    takes the ACK along); a task that reads and then does something else entirely must not
    hold the ACK back: the driver sends it within aioquic's 1 ms ACK delay and a granule."""
    async with open_internet() as internet:
        client_ep, plain = await pair(internet, LinkProfile(latency=0.005))
        server_ep = CountingEndpoint(plain)
        async with connected(client_ep, server_ep, config) as (conn, accepted):
            await conn.send_message(b"settle")
            assert await accepted.receive_message() == b"settle"
            await trio.sleep(0.5)  # every ACK delivered: both drivers idle
            for round_ in range(5):
                before = server_ep.sent - server_ep.probes
                await conn.send_message(b"one way %d" % round_)
                assert await accepted.receive_message() == b"one way %d" % round_
                await trio.sleep(0.0025)  # the reader busy elsewhere, not on the connection
                assert server_ep.sent - server_ep.probes > before  # the ACK left without it
                await trio.sleep(0.5)


async def test_a_send_cancelled_while_its_datagrams_leave_still_delivers(
    autojump_clock: trio.testing.MockClock,
    config: ConnectionConfig,
) -> None:
    """A send cancelled before its datagrams left loses none of them: they go with the driver
    at once (not after a loss timer), and the message arrives whole."""
    message = os.urandom(8_000)  # 7 datagrams: within the initial congestion window
    async with open_internet() as internet:
        link = LinkProfile(latency=0.005)  # 10 ms one way
        client_host = internet.add_host(name="client", link=link)
        server_host = internet.add_host(name="server", link=link)
        counting = CountingEndpoint(await client_host.bind((client_host.addresses[0], 0)))
        server_ep = await server_host.bind((server_host.addresses[0], 0))
        async with (
            listen(server_ep, SERVER, [CLIENT.node_id], config=config) as listener,
            connect(
                counting, server_ep.local_address, CLIENT, SERVER.node_id, config=config
            ) as conn,
        ):
            accepted = await listener.accept()
            await conn.send_message(b"settle")
            assert await accepted.receive_message() == b"settle"
            await trio.sleep(0.2)  # every ACK delivered: the driver is idle
            before = counting.sent
            gate = counting.gate = trio.Event()
            with trio.move_on_after(0.001):
                await conn.send_message(message)  # held at the gate: cancelled
            assert counting.sent == before
            counting.gate = None
            gate.set()
            started = trio.current_time()
            assert await accepted.receive_message() == message
            # one way (10 ms), not after a loss is noticed (a round trip) or a probe timeout
            assert trio.current_time() - started < 0.02


async def test_a_timer_left_due_is_looked_at_again_later_not_in_a_busy_loop(
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
    config: ConnectionConfig,
) -> None:
    """aioquic can report a timer as due that handling it does not clear (nothing it may send
    yet): the driver looks again a millisecond later. A busy loop would burn a core, and freeze
    a MockClock (this test would then fail at the bound below instead of hanging)."""
    async with open_internet() as internet:
        client_ep, server_ep = await pair(internet)
        async with (
            listen(server_ep, SERVER, [CLIENT.node_id], config=config) as listener,
            connect(
                client_ep, server_ep.local_address, CLIENT, SERVER.node_id, config=config
            ) as conn,
        ):
            await listener.accept()
            quic = conn._quic
            due = trio.current_time()
            passes = 0

            def handle_timer(now: float) -> None:
                nonlocal passes
                passes += 1
                if passes > 10_000:
                    raise AssertionError("the driver spins on a due timer")

            monkeypatch.setattr(quic, "get_timer", lambda: due)
            monkeypatch.setattr(quic, "handle_timer", handle_timer)
            conn._wake()
            await trio.sleep(1.0)
            assert 500 <= passes <= 1100  # about one a millisecond
            monkeypatch.undo()


async def test_garbage_does_not_break_a_connection(
    autojump_clock: trio.testing.MockClock,
    config: ConnectionConfig,
) -> None:
    async with open_internet() as internet:
        client_ep, server_ep = await pair(internet)
        attacker = await internet.add_host(name="attacker").bind()
        junk = [b"", b"\x00", b"\xc0" + os.urandom(1300), b"\x40" + os.urandom(60), os.urandom(9)]
        async with (
            listen(server_ep, SERVER, [CLIENT.node_id], config=config) as listener,
            connect(
                client_ep, server_ep.local_address, CLIENT, SERVER.node_id, config=config
            ) as conn,
        ):
            accepted = await listener.accept()
            for round_ in range(3):
                for data in junk:
                    await attacker.send_to(data, server_ep.local_address)
                    await attacker.send_to(data, client_ep.local_address)
                await conn.send_message(b"ping %d" % round_)
                assert await accepted.receive_message() == b"ping %d" % round_
                await accepted.send_message(b"pong")
                assert await conn.receive_message() == b"pong"


async def test_handshake_times_out_when_the_peer_is_silent(
    autojump_clock: trio.testing.MockClock,
    quic_backend: BackendName,
) -> None:
    async with open_internet() as internet:
        client_ep, silent = await pair(internet)
        config = ConnectionConfig(handshake_timeout=3.0, quic_backend=quic_backend)
        start = trio.current_time()
        with pytest.raises(HandshakeTimeout):
            async with connect(
                client_ep, silent.local_address, CLIENT, SERVER.node_id, config=config
            ):
                pytest.fail("connected to nobody")
        assert 3.0 <= trio.current_time() - start < 5.0


async def test_idle_timeout_closes(
    autojump_clock: trio.testing.MockClock, quic_backend: BackendName
) -> None:
    config = ConnectionConfig(idle_timeout=5.0, keepalive_interval=None, quic_backend=quic_backend)
    async with open_internet() as internet:
        client_ep, server_ep = await pair(internet)
        remote = server_ep.local_address
        async with (
            listen(server_ep, SERVER, [CLIENT.node_id], config=config) as listener,
            connect(client_ep, remote, CLIENT, SERVER.node_id, config=config) as conn,
        ):
            await listener.accept()
            start = trio.current_time()
            with pytest.raises(ConnectionClosed, match="idle timeout"):
                await conn.receive_message()
            assert 5.0 <= trio.current_time() - start < 10.0


async def test_keepalive_holds_an_idle_connection(
    autojump_clock: trio.testing.MockClock, quic_backend: BackendName
) -> None:
    config = ConnectionConfig(idle_timeout=5.0, keepalive_interval=1.0, quic_backend=quic_backend)
    async with open_internet() as internet:
        client_ep, server_ep = await pair(internet)
        async with (
            listen(server_ep, SERVER, [CLIENT.node_id], config=config) as listener,
            connect(
                client_ep, server_ep.local_address, CLIENT, SERVER.node_id, config=config
            ) as conn,
        ):
            accepted = await listener.accept()
            await trio.sleep(30)
            await conn.send_message(b"still here")
            assert await accepted.receive_message() == b"still here"


async def test_loopback_real_sockets(config: ConnectionConfig) -> None:
    stack = RealUdpStack()
    async with (
        await stack.bind(("127.0.0.1", 0)) as client_ep,
        await stack.bind(("127.0.0.1", 0)) as server_ep,
    ):
        with trio.fail_after(10):
            async with (
                listen(server_ep, SERVER, [CLIENT.node_id], config=config) as listener,
                connect(
                    client_ep, server_ep.local_address, CLIENT, SERVER.node_id, config=config
                ) as conn,
            ):
                accepted = await listener.accept()
                await conn.send_message(b"over loopback")
                assert await accepted.receive_message() == b"over loopback"
                await accepted.send_message(b"back")
                assert await conn.receive_message() == b"back"


async def test_a_connection_owns_the_ids_it_issued_and_no_other(
    autojump_clock: trio.testing.MockClock,
    config: ConnectionConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``owns`` (how a node routes a datagram from a rebound peer to its connection) follows
    the connection ids the library issued and retired, tracked from its events: every 1-RTT
    packet that reaches the client is addressed to an id it owns then, also after the server
    moves to another one (and retires the first)."""
    received: list[tuple[QuicHeader, bool]] = []
    feed = driver.Connection._feed

    def recording(connection: driver.Connection, datagrams: list[bytes]) -> None:
        if connection._is_client:
            for data in datagrams:
                header = parse_header(data)
                if header is not None and header.packet_type == QuicPacketType.ONE_RTT:
                    received.append((header, connection.owns(header)))
        feed(connection, datagrams)

    monkeypatch.setattr(driver.Connection, "_feed", recording)
    async with open_internet() as internet:
        client_ep, server_ep = await pair(internet)
        async with (
            listen(server_ep, SERVER, [CLIENT.node_id], config=config) as listener,
            connect(
                client_ep, server_ep.local_address, CLIENT, SERVER.node_id, config=config
            ) as conn,
        ):
            accepted = await listener.accept()
            for round_ in range(10):
                if round_ == 5:  # the server moves to another of the ids the client issued
                    port = accepted._quic
                    assert isinstance(port, AioquicConnection | Qh3Connection)
                    port.quic.change_connection_id()
                await accepted.send_message(b"x" * 5000)
                await conn.receive_message()
            assert len({header.destination_cid for header, _ in received}) >= 2
            assert all(owned for _, owned in received)
            assert not any(accepted.owns(header) for header, _ in received)
            first = received[0][0]
            assert not conn.owns(first)  # retired when the server moved on
            stranger = dataclasses.replace(
                first, destination_cid=os.urandom(len(first.destination_cid))
            )
            assert not conn.owns(stranger)
