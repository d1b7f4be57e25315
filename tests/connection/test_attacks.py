"""QUIC connections under attack: a peer filling the receiver's memory, spoofed Initials
taking the listener's handshake slots. Simulated internet, mock clock."""

from __future__ import annotations

import struct
from collections.abc import Callable
from functools import partial

import pytest
import trio
import trio.testing
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from macula_nat.connection import (
    ALPN,
    Connection,
    ConnectionClosed,
    ConnectionConfig,
    connect,
    listen,
)
from macula_nat.connection.backend import BACKENDS, BackendName
from macula_nat.connection.link import LINK_ADDRESS, PeerLink
from macula_nat.connection.quic_aioquic import AioquicConnection
from macula_nat.identity import NodeKey
from macula_nat.net import Address
from macula_nat.net.sim import Internet, open_internet
from tests.connection.test_driver import pair
from tests.connection.test_link import LOCAL, FakeRelay, session

CLIENT = NodeKey.generate()
SERVER = NodeKey.generate()
MIB = 1 << 20
BOUND = MIB
"""The receiver's ``max_receive_buffer`` in these tests: small, so an attack is quick."""
ATTACKER = ConnectionConfig(quic_backend="aioquic")
"""An attacker that bends QUIC runs on aioquic, whose Python state a test can bend."""


@pytest.fixture(params=BACKENDS)
def small(request: pytest.FixtureRequest) -> ConnectionConfig:
    """A receiver's config with a small receive bound, on each backend."""
    return ConnectionConfig(
        max_message_size=BOUND, max_receive_buffer=BOUND, quic_backend=request.param
    )


def aioquic_of(attacker: Connection) -> QuicConnection:
    """The attacker's aioquic connection itself."""
    port = attacker._quic
    assert isinstance(port, AioquicConnection)
    return port.quic


def held(connection: Connection) -> int:
    """What ``connection`` holds of its peer's data: in the driver and in aioquic."""
    statistics = connection.statistics()
    return statistics.held + statistics.reassembly


# -- receive memory ----------------------------------------------------------------------------
# The attacker is an authenticated peer on aioquic, whose Python state a test can bend, that
# queues far more than the bound and keeps sending what the receiver's flow control lets
# through; the receiver runs on each backend.


def incomplete_messages(attacker: Connection, bound: int = BOUND) -> None:
    """16 message streams, each holding a maximum-size message but its last byte."""
    quic = attacker._quic
    for _ in range(16):
        stream_id = quic.next_stream_id(unidirectional=True)
        quic.send_stream_data(stream_id, b"M" + struct.pack("!I", bound) + bytes(bound - 1))


def unread_streams(attacker: Connection, bound: int = BOUND) -> None:
    """64 bidirectional streams of data the receiver's application never reads."""
    quic = attacker._quic
    for _ in range(64):
        quic.send_stream_data(quic.next_stream_id(unidirectional=False), bytes(bound // 4))


def out_of_order(attacker: Connection, bound: int = BOUND) -> None:
    """64 streams whose first half never comes: the receiver reassembles behind a gap."""
    quic = aioquic_of(attacker)
    gap = bound // 2
    for _ in range(64):
        stream_id = quic.get_next_available_stream_id()
        quic.send_stream_data(stream_id, bytes(gap + 1000))
        quic._streams[stream_id].sender._pending.subtract(0, gap)


async def peak_held(
    attack: Callable[[Connection, int], None], config: ConnectionConfig, bound: int = BOUND
) -> tuple[int, int, int]:
    """The most a receiver with ``config`` (a ``bound`` receive buffer) holds of the peer's
    data while ``attack`` runs from an aioquic peer (sampled every 50 ms, stopping early past
    ``bound`` + 1 MiB), the most streams the peer had open at once, and the most connection
    credit the receiver granted (the application reads nothing, so that is what it may have to
    hold, in the driver or inside the library)."""
    peak = streams = credit = 0
    async with open_internet() as internet:
        client_ep, server_ep = await pair(internet)
        async with (
            listen(server_ep, SERVER, [CLIENT.node_id], config=config) as listener,
            connect(
                client_ep, server_ep.local_address, CLIENT, SERVER.node_id, config=ATTACKER
            ) as attacker,
        ):
            receiver = await listener.accept()
            attack(attacker, bound)
            for _ in range(400):
                if not attacker._usable():
                    break
                await attacker._transmit()
                await trio.sleep(0.05)
                peak = max(peak, held(receiver))
                streams = max(streams, receiver.statistics().peer_streams)
                credit = max(credit, aioquic_of(attacker)._remote_max_data)
                if peak > bound + MIB:
                    break
    return peak, streams, credit


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("attack", [incomplete_messages, unread_streams, out_of_order])
async def test_a_peer_cannot_make_the_receiver_hold_more_than_its_bound(
    autojump_clock: trio.testing.MockClock,
    attack: Callable[[Connection, int], None],
    backend: BackendName,
) -> None:
    config = ConnectionConfig(
        max_message_size=BOUND, max_receive_buffer=BOUND, quic_backend=backend
    )
    peak, streams, credit = await peak_held(attack, config)
    assert peak <= BOUND + MIB
    assert credit <= BOUND + MIB
    assert streams <= 128 + 3  # the bidirectional streams, our three unidirectional
    if not (attack is out_of_order and backend == "qh3"):
        assert peak > 0  # the attack reached the receiver (qh3 does not say what it reassembles)


async def test_a_slow_reader_slows_the_sender_and_loses_nothing(
    autojump_clock: trio.testing.MockClock, small: ConnectionConfig
) -> None:
    """Flow control, not a closed connection, answers a reader that falls behind; maximum-size
    messages still pass a window just their size."""
    messages = [bytes([n]) * BOUND for n in range(6)]
    async with open_internet() as internet:
        client_ep, server_ep = await pair(internet)
        async with (
            listen(server_ep, SERVER, [CLIENT.node_id], config=small) as listener,
            connect(
                client_ep, server_ep.local_address, CLIENT, SERVER.node_id, config=small
            ) as conn,
        ):
            receiver = await listener.accept()
            received: list[bytes] = []

            async def read_slowly() -> None:
                for _ in messages:
                    await trio.sleep(1)
                    received.append(await receiver.receive_message())
                    assert held(receiver) <= BOUND + MIB

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_slowly)
                for message in messages:
                    await conn.send_message(message)
            assert received == messages


async def test_a_peer_sending_past_its_credit_is_closed_with_the_reason(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """On aioquic. On qh3 the excess never reaches the library: the driver drops the peer's
    data once the application holds its share (the test above bounds what it holds)."""
    small = ConnectionConfig(
        max_message_size=BOUND, max_receive_buffer=BOUND, quic_backend="aioquic"
    )
    async with open_internet() as internet:
        client_ep, server_ep = await pair(internet)
        async with (
            listen(server_ep, SERVER, [CLIENT.node_id], config=small) as listener,
            connect(
                client_ep, server_ep.local_address, CLIENT, SERVER.node_id, config=ATTACKER
            ) as attacker,
        ):
            receiver = await listener.accept()
            quic = aioquic_of(attacker)
            quic._remote_max_data = 1 << 40  # the attacker ignores the credit it was given
            stream_id = quic.get_next_available_stream_id()
            quic.send_stream_data(stream_id, bytes(2 * BOUND))
            quic._streams[stream_id].max_stream_data_remote = 1 << 40
            with trio.move_on_after(10):
                await attacker._transmit()
                await receiver.wait_closed()
            with pytest.raises(ConnectionClosed, match=r"broke the protocol.*data limit"):
                await receiver.receive_message()


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"max_message_size": 2 * MIB, "max_receive_buffer": MIB}, "exceeds max_receive_buffer"),
        ({"max_receive_buffer": 0}, "max_receive_buffer"),
        ({"handshake_timeout": -1.0}, "handshake_timeout"),
        ({"keepalive_interval": 0.0}, "keepalive_interval"),
    ],
)
def test_a_nonsense_config_is_refused(fields: dict[str, float], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        ConnectionConfig(**fields)  # type: ignore[arg-type]


# -- handshake slots ---------------------------------------------------------------------------


def bogus_initial(server: Address) -> bytes:
    """A well-formed, full-size client Initial (a fresh one: its own connection ids)."""
    quic = QuicConnection(configuration=QuicConfiguration(is_client=True, alpn_protocols=[ALPN]))
    quic.connect(server, now=trio.current_time())
    data, _ = quic.datagrams_to_send(now=trio.current_time())[0]
    assert len(data) >= 1200
    return data


async def spoofed_flood(
    internet: Internet, server: Address, *, per_second: int, seconds: float
) -> None:
    """``per_second`` Initials a second, each from another address that never answers (what
    comes back to a spoofed source is lost on the victim's side)."""
    sources = internet.add_host(addresses=64, name="spoofed sources")
    endpoints = [await sources.bind((address, 0)) for address in sources.addresses]
    for n in range(int(per_second * seconds)):
        await endpoints[n % len(endpoints)].send_to(bogus_initial(server), server)
        await trio.sleep(1 / per_second)


async def test_a_legitimate_connect_succeeds_within_2s_under_a_spoofed_initial_flood(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_internet() as internet:
        client_ep, server_ep = await pair(internet)
        server = server_ep.local_address
        async with listen(server_ep, SERVER, [CLIENT.node_id]) as listener:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    partial(spoofed_flood, internet, server, per_second=16, seconds=20)
                )
                await trio.sleep(5)  # the flood has filled what it can
                held_by_flood = listener.statistics().pending
                with trio.fail_after(2):
                    async with connect(client_ep, server, CLIENT, SERVER.node_id) as conn:
                        accepted = await listener.accept()
                        await conn.send_message(b"through")
                        assert await accepted.receive_message() == b"through"
                nursery.cancel_scope.cancel()
            statistics = listener.statistics()
    assert held_by_flood <= statistics.limits.retry_threshold
    assert statistics.retries_sent >= 16


async def test_a_listener_that_always_retries_still_accepts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """aioquic's client follows a Retry: with ``retry_threshold=0`` every connect pays one
    round trip more and succeeds."""
    async with open_internet() as internet:
        client_ep, server_ep = await pair(internet)
        async with listen(server_ep, SERVER, [CLIENT.node_id], retry_threshold=0) as listener:
            async with connect(client_ep, server_ep.local_address, CLIENT, SERVER.node_id) as conn:
                accepted = await listener.accept()
                await accepted.send_message(b"proven")
                assert await conn.receive_message() == b"proven"
            # qh3's ClientHello (a post-quantum key share) spans two Initials, each answered by
            # a Retry; the client follows the first
            assert 1 <= listener.statistics().retries_sent <= 2


class WiredRelay(FakeRelay):
    """A relay session whose sends arrive on another (the peer's end)."""

    def __init__(self) -> None:
        super().__init__()
        self.other: FakeRelay | None = None

    async def send(self, payload: bytes) -> None:
        await super().send(payload)
        assert self.other is not None
        self.other.push(payload)


async def test_a_retry_crosses_a_relayed_link(autojump_clock: trio.testing.MockClock) -> None:
    """Over a relay the peer has one fixed link address; its token proves that address."""
    client_relay, server_relay = WiredRelay(), WiredRelay()
    client_relay.other, server_relay.other = server_relay, client_relay
    client_link = PeerLink(SERVER.node_id, LOCAL, relay=session(client_relay))
    server_link = PeerLink(None, LOCAL, relay=session(server_relay))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client_link.run)
        nursery.start_soon(server_link.run)
        async with (
            listen(server_link, SERVER, [CLIENT.node_id], retry_threshold=0) as listener,
            connect(client_link, LINK_ADDRESS, CLIENT, SERVER.node_id) as conn,
        ):
            accepted = await listener.accept()
            await conn.send_message(b"relayed")
            assert await accepted.receive_message() == b"relayed"
            # qh3's ClientHello (a post-quantum key share) spans two Initials, each answered by
            # a Retry; the client follows the first
            assert 1 <= listener.statistics().retries_sent <= 2
        nursery.cancel_scope.cancel()
