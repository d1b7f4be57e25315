"""The driver's batched data path (issue 14): what it must still do when it reads many datagrams
at once and sends without waiting. Behaviour, not timing: every datagram the QUIC library
produced leaves, in order, whichever way the endpoint takes it; a batch is answered with one
output step; on aioquic a message the application answers costs no output step of its own (the
answer's takes its ACK); a bulk transfer overflows no receive buffer of the simulator."""

from __future__ import annotations

import os

import attrs
import pytest
import trio
import trio.testing
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet_builder import QuicPacketBuilder
from aioquic.quic.recovery import QuicPacketSpace

from macula_nat.connection import Connection, ConnectionConfig, connect, listen
from macula_nat.net import Address, UdpEndpoint
from macula_nat.net.endpoint import READ_BATCH
from macula_nat.net.sim import LinkProfile, open_internet
from tests.connection.test_driver import CLIENT, SERVER, connected, pair

LINK = LinkProfile(latency=0.005)


class NarrowEndpoint(UdpEndpoint):
    """An endpoint whose ``send_to_nowait`` has room for ``room`` datagrams between two
    awaited sends (a kernel buffer that fills fast); it logs each datagram as it leaves, and
    counts the batches it hands out (each read ``read_delay`` after the reader asked)."""

    def __init__(self, inner: UdpEndpoint, room: int, *, read_delay: float = 0.0) -> None:
        self.inner = inner
        self.read_delay = read_delay
        self.room = self.left = room
        self.left_nowait = 0
        self.left_waiting = 0
        self.would_block = 0
        self.sent: list[bytes] = []
        self.batches = 0
        self.received = 0

    @property
    def local_address(self) -> Address:
        return self.inner.local_address

    async def send_to(self, data: bytes, address: Address) -> None:
        await self.inner.send_to(data, address)
        self.left = self.room
        self.left_waiting += 1
        self.sent.append(data)

    def send_to_nowait(self, data: bytes, address: Address) -> None:
        if self.left == 0:
            self.would_block += 1
            raise trio.WouldBlock
        self.inner.send_to_nowait(data, address)
        self.left -= 1
        self.left_nowait += 1
        self.sent.append(data)

    async def receive_from(self) -> tuple[bytes, Address]:
        return await self.inner.receive_from()

    def receive_from_nowait(self) -> tuple[bytes, Address]:
        return self.inner.receive_from_nowait()

    async def receive_batch(self, max_datagrams: int = READ_BATCH) -> list[tuple[bytes, Address]]:
        if self.read_delay:
            await trio.sleep(self.read_delay)  # a busy reader: datagrams pile up meanwhile
        batch = await self.inner.receive_batch(max_datagrams)
        self.batches += 1
        self.received += len(batch)
        return batch

    def close(self) -> None:
        self.inner.close()


@attrs.define
class Output:
    """Every datagram the QUIC library handed a connection's driver, in order, and each output
    step."""

    produced: list[bytes] = attrs.Factory(list)
    steps: int = 0
    empty: int = 0
    """Steps that produced nothing."""


def record_output(connection: Connection) -> Output:
    """Record what the QUIC library hands ``connection``'s driver from now on."""
    quic = connection._quic
    output = Output()
    original = quic.datagrams_to_send

    def datagrams_to_send(now: float) -> list[bytes]:
        datagrams = original(now)
        output.produced.extend(datagrams)
        output.steps += 1
        output.empty += not datagrams
        return datagrams

    quic.datagrams_to_send = datagrams_to_send  # type: ignore[method-assign]
    return output


async def settle(conn: Connection, accepted: Connection) -> None:
    """One message over, then quiet until every ACK is delivered: both drivers idle."""
    await conn.send_message(b"settle")
    assert await accepted.receive_message() == b"settle"
    await trio.sleep(1)


async def echo(conn: Connection, accepted: Connection, rounds: int) -> None:
    """``rounds`` requests from ``conn``, each answered with itself by ``accepted``."""
    for round_ in range(rounds):
        request = b"request %d" % round_
        await conn.send_message(request)
        await accepted.send_message(await accepted.receive_message())
        assert await conn.receive_message() == request


async def transfer(sender: Connection, receiver: Connection, total: int) -> None:
    """Send ``total`` random bytes in 64 KiB messages while ``receiver`` reads and checks each."""
    data = os.urandom(total)
    messages = [data[start : start + 64 * 1024] for start in range(0, total, 64 * 1024)]

    async def send() -> None:
        for message in messages:
            await sender.send_message(message)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        for message in messages:
            assert await receiver.receive_message() == message


async def test_every_datagram_aioquic_produced_leaves_in_order_when_the_socket_fills(
    autojump_clock: trio.testing.MockClock, config: ConnectionConfig
) -> None:
    async with open_internet(seed=7) as internet:
        client_host = internet.add_host(name="client", link=LINK)
        server_host = internet.add_host(name="server", link=LINK)
        narrow = NarrowEndpoint(await client_host.bind((client_host.addresses[0], 0)), room=3)
        server_ep = await server_host.bind((server_host.addresses[0], 0))
        async with (
            listen(server_ep, SERVER, [CLIENT.node_id], config=config) as listener,
            connect(narrow, server_ep.local_address, CLIENT, SERVER.node_id, config=config) as conn,
        ):
            accepted = await listener.accept()
            output = record_output(conn)
            narrow.sent.clear()
            await transfer(conn, accepted, 1 << 20)

            await trio.sleep(1)  # the last ACKs exchanged: no flush is half done
            assert narrow.sent == output.produced
            assert narrow.left_nowait > 0 and narrow.left_waiting > 0 and narrow.would_block > 0


async def test_a_batch_is_answered_with_one_output_step(
    autojump_clock: trio.testing.MockClock, config: ConnectionConfig
) -> None:
    """The receiver of a bulk transfer reads many datagrams per batch and runs aioquic's
    output step once for each batch, not once per datagram."""
    async with open_internet(seed=8) as internet:
        client_host = internet.add_host(name="client", link=LINK)
        server_host = internet.add_host(name="server", link=LINK)
        client_ep = await client_host.bind((client_host.addresses[0], 0))
        counting = NarrowEndpoint(
            await server_host.bind((server_host.addresses[0], 0)), 1 << 30, read_delay=0.004
        )
        async with (
            listen(counting, SERVER, [CLIENT.node_id], config=config) as listener,
            connect(
                client_ep, counting.local_address, CLIENT, SERVER.node_id, config=config
            ) as conn,
        ):
            accepted = await listener.accept()
            output = record_output(accepted)
            received_before, batches_before = counting.received, counting.batches
            await transfer(conn, accepted, 1 << 20)

            received = counting.received - received_before
            batches = counting.batches - batches_before
            assert received > 4 * batches  # datagrams did arrive together
            # one step per batch, and about one more for the ACK timer each batch arms (here
            # 901 datagrams in 38 batches took 75 steps); one per datagram would be 901
            assert output.steps <= 3 * batches
            assert output.steps < received / 4


async def test_a_message_the_application_answers_costs_no_output_step_of_its_own(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """On aioquic, input that woke the application leaves the output step to it: the answer's
    step takes the acknowledgement too, so no step finds nothing to send and a message costs
    one step, the sender's. (qh3's core sends such an ACK alone, so there the driver does not
    wait: ``acks_ride``.)"""
    config = ConnectionConfig(quic_backend="aioquic")
    rounds = 50
    async with (
        open_internet(seed=9) as internet,
        connected(*await pair(internet, LINK), config) as (conn, accepted),
    ):
        await settle(conn, accepted)
        client, server = record_output(conn), record_output(accepted)
        await echo(conn, accepted, rounds)
        # before, each message's input ran a step of its own, which found nothing to send
        assert (client.steps + server.steps, client.empty + server.empty) == (2 * rounds, 0)


async def test_a_bulk_transfer_overflows_no_receive_buffer(
    autojump_clock: trio.testing.MockClock, config: ConnectionConfig
) -> None:
    async with (
        open_internet(seed=9) as internet,
        connected(*await pair(internet, LINK), config) as (conn, accepted),
    ):
        await transfer(conn, accepted, 4 << 20)
    assert internet.statistics().overflowed == 0  # the closes included


async def test_aioquic_writes_connection_limits_only_when_it_has_one_to_announce(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the handshake the peer's proof (or acceptance) stream has ended, which raises its
    stream limit by one; aioquic batches that MAX_STREAMS, so the limit stays raised and unsent,
    and the adapter must not take that for a frame to write on every packet."""
    config = ConnectionConfig(quic_backend="aioquic")
    writes = 0
    original = QuicConnection._write_connection_limits

    def counted(self: QuicConnection, builder: QuicPacketBuilder, space: QuicPacketSpace) -> None:
        nonlocal writes
        writes += 1
        original(self, builder, space)

    async with (
        open_internet(seed=10) as internet,
        connected(*await pair(internet, LINK), config) as (conn, accepted),
    ):
        await settle(conn, accepted)
        monkeypatch.setattr(QuicConnection, "_write_connection_limits", counted)
        output = record_output(conn)
        await echo(conn, accepted, 20)
        assert output.produced  # packets were built: each would have called the writer
        assert writes == 0
