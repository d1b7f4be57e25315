"""A connection under the benchmark's heaviest load (a bulk transfer of maximum-rate messages)
holds no more of its peer's data than its configured bound, also while its application stops
reading, on each backend; and loses nothing. Behaviour under a mock clock, not timing."""

from __future__ import annotations

import attrs
import trio
import trio.testing

from macula_nat.connection import Connection, ConnectionConfig, connect, listen
from macula_nat.net.sim import open_internet
from tests.connection.test_driver import CLIENT, SERVER, connected, pair

MIB = 1 << 20
MESSAGE = 64 * 1024
MESSAGES = 128
"""8 MiB in all: eight times the receive bound below."""
PAUSE_AT = MESSAGES // 4
PAUSE = 5.0


def held(connection: Connection) -> int:
    statistics = connection.statistics()
    return statistics.held + statistics.reassembly


async def test_a_bulk_transfer_with_a_paused_reader_stays_within_the_receive_bound(
    autojump_clock: trio.testing.MockClock, config: ConnectionConfig
) -> None:
    config = attrs.evolve(config, max_receive_buffer=MIB, max_message_size=MESSAGE)
    messages = [n.to_bytes(4, "big") * (MESSAGE // 4) for n in range(MESSAGES)]
    peak = 0
    async with open_internet() as internet:
        client_ep, server_ep = await pair(internet)
        async with (
            listen(server_ep, SERVER, [CLIENT.node_id], config=config) as listener,
            connect(
                client_ep, server_ep.local_address, CLIENT, SERVER.node_id, config=config
            ) as sender,
            trio.open_nursery() as nursery,
        ):
            receiver = await listener.accept()

            async def sample() -> None:
                nonlocal peak
                while True:
                    peak = max(peak, held(receiver))
                    assert peak <= config.receive_window
                    await trio.sleep(0.001)

            async def send() -> None:
                for message in messages:
                    await sender.send_message(message)

            nursery.start_soon(sample)
            nursery.start_soon(send)
            for n, message in enumerate(messages):
                if n == PAUSE_AT:
                    await trio.sleep(PAUSE)
                    paused_at = held(receiver)
                assert await receiver.receive_message() == message
            nursery.cancel_scope.cancel()
    assert paused_at >= MIB // 4  # the pause filled its share: the checks above meant something
    assert peak <= config.receive_window
    if config.quic_backend == "qh3":
        assert receiver.withheld > 0  # qh3's credit runs ahead: the driver held datagrams back
    else:
        assert receiver.withheld == 0  # aioquic's credit follows the reads


async def test_a_reader_paused_past_the_idle_timeout_keeps_its_connection(
    autojump_clock: trio.testing.MockClock, config: ConnectionConfig
) -> None:
    """A full receive bound stops the sender, not the connection: ACKs and PINGs still pass
    (on qh3 the driver lets small datagrams through while it drops the peer's data)."""
    config = attrs.evolve(config, max_receive_buffer=MIB, max_message_size=MESSAGE)
    messages = [n.to_bytes(4, "big") * (MESSAGE // 4) for n in range(MESSAGES // 4)]
    async with open_internet() as internet:
        client_ep, server_ep = await pair(internet)
        async with (
            listen(server_ep, SERVER, [CLIENT.node_id], config=config) as listener,
            connect(
                client_ep, server_ep.local_address, CLIENT, SERVER.node_id, config=config
            ) as sender,
            trio.open_nursery() as nursery,
        ):
            receiver = await listener.accept()

            async def send() -> None:
                for message in messages:
                    await sender.send_message(message)

            nursery.start_soon(send)
            await trio.sleep(2.5 * config.idle_timeout)  # the bound fills; nobody reads
            assert held(receiver) <= config.receive_window
            for message in messages:
                assert await receiver.receive_message() == message
            assert not (sender.closed or receiver.closed)


async def test_an_unread_message_is_held_with_its_length_prefix_until_read(
    autojump_clock: trio.testing.MockClock, config: ConnectionConfig
) -> None:
    """What the peer's credit paid for, its length prefix too, is held until the application
    reads the message; reading it gives all of it back (one release per message)."""
    messages = [b"x" * 10, b"y" * 300]
    async with (
        open_internet() as internet,
        connected(*await pair(internet), config) as (sender, receiver),
    ):
        for message in messages:
            await sender.send_message(message)
        await trio.sleep(1)
        assert receiver.statistics().held == sum(4 + len(m) for m in messages)
        assert await receiver.receive_message() == messages[0]
        assert receiver.statistics().held == 4 + len(messages[1])
        assert await receiver.receive_message() == messages[1]
        assert receiver.statistics().held == 0
