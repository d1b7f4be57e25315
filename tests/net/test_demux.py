"""One socket shared by STUN, relay frames and QUIC: routing, drops, one NAT mapping, closing."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from macula_nat.nat.observer import Observer, open_observer
from macula_nat.nat.stun_client import open_stun_client
from macula_nat.net import Address, RealUdpStack, UdpEndpoint
from macula_nat.net.demux import (
    SharedEndpoint,
    Traffic,
    ViewStatistics,
    classify,
    open_shared_endpoint,
)
from macula_nat.net.sim import Internet, LinkProfile, Preset, add_site, open_internet
from macula_nat.relay.frames import FIRST_BYTES, is_relay_frame
from macula_nat.wire import stun

OBSERVER: Address = ("198.51.100.10", 3478)
RELAY: Address = ("198.51.100.20", 4000)
LINK = LinkProfile(latency=0.01)

STUN_REQUEST = stun.binding_request().encode()
RELAY_FRAME = bytes([9]) + b"relay"
PUNCH_FRAME = bytes([0x11]) + b"probe"
QUIC_SHORT = bytes([0x41]) + b"short"
QUIC_LONG = bytes([0xC3]) + b"long"
JUNK = [b"", bytes([0x20]) + b"dtls", bytes([0x90]) + b"x", bytes([1]) + b"not stun at all"]


async def public_pair(internet: Internet) -> tuple[UdpEndpoint, UdpEndpoint]:
    """Two endpoints on two public hosts: the node's socket and a peer's."""
    node_host = internet.add_host(link=LINK)
    peer_host = internet.add_host(link=LINK)
    node = await node_host.bind((node_host.addresses[0], 0))
    peer = await peer_host.bind((peer_host.addresses[0], 0))
    return node, peer


def zeros(received: int = 0, dropped: int = 0, sent: int = 0, queued: int = 0) -> ViewStatistics:
    return ViewStatistics(received=received, dropped=dropped, sent=sent, queued=queued)


# -- classification, pure ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "protocol"),
    [
        (STUN_REQUEST, Traffic.STUN),
        (RELAY_FRAME, Traffic.RELAY),
        (bytes([4]), Traffic.RELAY),
        (bytes([15]), Traffic.RELAY),
        (QUIC_SHORT, Traffic.QUIC),
        (bytes([64]), Traffic.QUIC),
        (bytes([127]), Traffic.QUIC),
        (QUIC_LONG, Traffic.QUIC),
        (bytes([255]), Traffic.QUIC),
        *((junk, None) for junk in JUNK),
        (bytes([16]), Traffic.PUNCH),
        (bytes([19]), Traffic.PUNCH),
        (bytes([20]), None),
        (bytes([63]), None),
        (bytes([128]), None),
        (bytes([191]), None),
    ],
)
def test_the_first_byte_picks_the_protocol(data: bytes, protocol: Traffic | None) -> None:
    assert classify(data) is protocol


@given(st.binary(max_size=64))
def test_classification_agrees_with_the_protocols_own_checks(data: bytes) -> None:
    protocol = classify(data)
    assert (protocol is Traffic.RELAY) == is_relay_frame(data)
    if protocol is Traffic.STUN:
        assert stun.is_stun(data) and data[0] <= 3
    if protocol is Traffic.QUIC:
        assert data[0] in range(64, 128) or data[0] >= 192
    if protocol is Traffic.PUNCH:
        assert data[0] in range(16, 20)
    if protocol is None and data:
        assert data[0] not in FIRST_BYTES


def test_a_view_buffer_must_hold_something() -> None:
    with pytest.raises(ValueError, match="RELAY view buffer"):
        SharedEndpoint(_Unbound(), {Traffic.RELAY: 0})


class _Unbound(UdpEndpoint):
    """An endpoint that is never used, for checks made before any I/O."""

    @property
    def local_address(self) -> Address:
        return ("127.0.0.1", 9)

    async def send_to(self, data: bytes, address: Address) -> None:
        raise AssertionError("unused")

    async def receive_from(self) -> tuple[bytes, Address]:
        raise AssertionError("unused")

    def close(self) -> None:
        pass


# -- routing ----------------------------------------------------------------------------------


async def test_datagrams_are_routed_by_their_first_byte(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_internet(seed=1) as internet:
        node, peer = await public_pair(internet)
        async with open_shared_endpoint(node) as shared:
            for data in [STUN_REQUEST, RELAY_FRAME, QUIC_SHORT, *JUNK, QUIC_LONG]:
                await peer.send_to(data, node.local_address)
            source = peer.local_address
            assert await shared.view(Traffic.STUN).receive_from() == (STUN_REQUEST, source)
            assert await shared.view(Traffic.RELAY).receive_from() == (RELAY_FRAME, source)
            quic = shared.view(Traffic.QUIC)
            assert [await quic.receive_from() for _ in range(2)] == [
                (QUIC_SHORT, source),
                (QUIC_LONG, source),
            ]
            for view in (quic, shared.view(Traffic.RELAY)):
                await view.send_to(b"\x40back", peer.local_address)
            statistics = shared.statistics()
    assert statistics.stun == zeros(received=1)
    assert statistics.relay == zeros(received=1, sent=1)
    assert statistics.quic == zeros(received=2, sent=1)
    assert statistics[Traffic.QUIC] is statistics.quic
    assert statistics.unclassified == len(JUNK)


async def test_a_batch_is_routed_whole_and_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_internet(seed=1) as internet:
        node_host = internet.add_host(link=LINK, receive_buffer=1024)
        peer_host = internet.add_host(link=LINK)
        node = await node_host.bind((node_host.addresses[0], 0))
        peer = await peer_host.bind((peer_host.addresses[0], 0))
        sent = [(QUIC_SHORT if i % 3 else RELAY_FRAME) + b"%d" % i for i in range(600)]
        async with open_shared_endpoint(node, buffer=1024) as shared:
            for data in sent:  # all land in the node's socket at once: batches of READ_BATCH
                await peer.send_to(data, node.local_address)
            quic, relay = shared.view(Traffic.QUIC), shared.view(Traffic.RELAY)
            await trio.sleep(1)
            got_quic = [data for data, _ in await quic.receive_batch(1024)]
            got_relay = [data for data, _ in await relay.receive_batch(1024)]
            assert got_quic == [data for data in sent if data[0] == QUIC_SHORT[0]]
            assert got_relay == [data for data in sent if data[0] == RELAY_FRAME[0]]
            quic.send_to_nowait(b"back", peer.local_address)
            assert quic.send_batch_nowait([b"run", b"of two"], peer.local_address) == 2
            assert shared.statistics().quic.sent == 3
            assert [data for data, _ in await peer.receive_batch()] == [b"back", b"run", b"of two"]


async def test_a_burst_larger_than_a_view_reaches_a_reader_that_keeps_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Batches stay within what a view holds: a burst the socket's buffer held is not dropped
    at the view (default buffer) whose reader takes a batch each time it runs."""
    async with open_internet(seed=2) as internet:
        node_host = internet.add_host(link=LINK, receive_buffer=2048)
        peer_host = internet.add_host(link=LINK)
        node = await node_host.bind((node_host.addresses[0], 0))
        peer = await peer_host.bind((peer_host.addresses[0], 0))
        sent = [QUIC_SHORT + b"%d" % i for i in range(1500)]
        async with open_shared_endpoint(node) as shared:
            for data in sent:  # in flight together: they land in the socket at once
                await peer.send_to(data, node.local_address)
            quic = shared.view(Traffic.QUIC)
            received: list[bytes] = []
            with trio.fail_after(5):
                while len(received) < len(sent):
                    received += [data for data, _ in await quic.receive_batch()]
            assert received == sent
            assert shared.statistics().quic.dropped == 0


async def test_a_full_view_drops_the_newest_and_counts_without_blocking_the_others(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_internet(seed=2) as internet:
        node, peer = await public_pair(internet)
        async with open_shared_endpoint(node, buffer={Traffic.RELAY: 2}) as shared:
            for index in range(5):
                await peer.send_to(bytes([5, index]), node.local_address)
            await peer.send_to(QUIC_SHORT, node.local_address)
            quic = shared.view(Traffic.QUIC)
            assert await quic.receive_from() == (QUIC_SHORT, peer.local_address)
            assert shared.statistics().relay == zeros(received=5, dropped=3, queued=2)
            relay = shared.view(Traffic.RELAY)
            assert [(await relay.receive_from())[0] for _ in range(2)] == [b"\x05\x00", b"\x05\x01"]
            await peer.send_to(bytes([5, 9]), node.local_address)
            assert (await relay.receive_from())[0] == b"\x05\x09"
            assert shared.statistics().relay == zeros(received=6, dropped=3)


# -- one NAT mapping --------------------------------------------------------------------------


async def test_every_view_rides_the_same_nat_mapping(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_internet(seed=3) as internet:
        observer_host = internet.add_host([OBSERVER[0]], link=LINK)
        observer = await observer_host.bind(OBSERVER)
        site = add_site(internet.public, Preset.SYMMETRIC_RANDOM, link=LINK)
        node = await site.host.bind()
        async with open_shared_endpoint(node) as shared:
            await shared.view(Traffic.STUN).send_to(STUN_REQUEST, OBSERVER)
            await shared.view(Traffic.RELAY).send_to(RELAY_FRAME, OBSERVER)
            await shared.view(Traffic.QUIC).send_to(QUIC_LONG, OBSERVER)
            arrivals = [await observer.receive_from() for _ in range(3)]
            # And what comes back on that one mapping reaches each view.
            public = arrivals[0][1]
            await observer.send_to(QUIC_SHORT, public)
            assert await shared.view(Traffic.QUIC).receive_from() == (QUIC_SHORT, OBSERVER)
    assert [data for data, _ in arrivals] == [STUN_REQUEST, RELAY_FRAME, QUIC_LONG]
    assert {source for _, source in arrivals} == {public}
    assert public[0] != node.local_address[0]
    assert site.nats[0].statistics().mappings_created == 1


async def test_a_stun_client_on_the_stun_view_works_while_relay_frames_arrive(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_internet(seed=4) as internet:
        observer_host = internet.add_host([OBSERVER[0]], link=LINK)
        relay_host = internet.add_host([RELAY[0]], link=LINK)
        relay = await relay_host.bind(RELAY)
        site = add_site(internet.public, Preset.PORT_RESTRICTED_CONE, link=LINK)
        async with (
            open_observer(Observer(observer_host, OBSERVER)),
            open_shared_endpoint(await site.host.bind()) as shared,
            trio.open_nursery() as nursery,
        ):
            relay_view = shared.view(Traffic.RELAY)
            await relay_view.send_to(RELAY_FRAME, RELAY)  # opens the NAT's filter to the relay
            _, public = await relay.receive_from()

            async def flood() -> None:
                for index in range(200):
                    await relay.send_to(bytes([9, index]), public)
                    await trio.sleep(0.001)

            nursery.start_soon(flood)
            async with open_stun_client(shared.view(Traffic.STUN)) as client:
                responses = [await client.request(OBSERVER) for _ in range(3)]
                client_statistics = client.statistics()
            frames = [(await relay_view.receive_from())[0] for _ in range(200)]
            statistics = shared.statistics()
    assert [response.mapped_address for response in responses] == [public] * 3
    assert all(response.transmissions == 1 for response in responses)
    assert client_statistics.malformed == client_statistics.unmatched == 0
    assert frames == [bytes([9, index]) for index in range(200)]
    assert statistics.stun == zeros(received=3, sent=3)
    assert statistics.relay == zeros(received=200, sent=1)
    assert statistics.unclassified == 0


# -- closing ----------------------------------------------------------------------------------


async def test_a_view_closes_on_its_own(autojump_clock: trio.testing.MockClock) -> None:
    async with open_internet(seed=5) as internet:
        node, peer = await public_pair(internet)
        async with open_shared_endpoint(node) as shared, trio.open_nursery() as nursery:
            stun_view = shared.view(Traffic.STUN)
            blocked = trio.Event()

            async def receive_until_closed() -> None:
                with pytest.raises(trio.ClosedResourceError):
                    await stun_view.receive_from()
                blocked.set()

            nursery.start_soon(receive_until_closed)
            await trio.testing.wait_all_tasks_blocked()
            await stun_view.aclose()
            await blocked.wait()
            assert stun_view.closed and not shared.closed
            with pytest.raises(trio.ClosedResourceError):
                await stun_view.send_to(STUN_REQUEST, peer.local_address)
            with pytest.raises(trio.ClosedResourceError):
                await stun_view.receive_from()
            assert shared.view(Traffic.STUN) is stun_view

            await peer.send_to(STUN_REQUEST, node.local_address)
            await peer.send_to(RELAY_FRAME, node.local_address)
            relay = shared.view(Traffic.RELAY)
            assert await relay.receive_from() == (RELAY_FRAME, peer.local_address)
            await relay.send_to(RELAY_FRAME, peer.local_address)
            assert await peer.receive_from() == (RELAY_FRAME, node.local_address)
            assert shared.statistics().stun == zeros(received=1, dropped=1)


async def test_closing_the_shared_endpoint_closes_every_view(
    autojump_clock: trio.testing.MockClock,
) -> None:
    closed: list[Traffic] = []
    async with open_internet(seed=6) as internet:
        node, peer = await public_pair(internet)
        async with open_shared_endpoint(node) as shared:
            async with trio.open_nursery() as nursery:

                async def receive_until_closed(protocol: Traffic) -> None:
                    with pytest.raises(trio.ClosedResourceError):
                        await shared.view(protocol).receive_from()
                    closed.append(protocol)

                for protocol in Traffic:
                    nursery.start_soon(receive_until_closed, protocol)
                await trio.testing.wait_all_tasks_blocked()
                await shared.aclose()
            assert shared.closed
            for protocol in Traffic:
                with pytest.raises(trio.ClosedResourceError):
                    await shared.view(protocol).send_to(QUIC_SHORT, peer.local_address)
            with pytest.raises(trio.ClosedResourceError):
                await node.send_to(QUIC_SHORT, peer.local_address)
    assert sorted(closed, key=lambda protocol: protocol.value) == sorted(
        Traffic, key=lambda protocol: protocol.value
    )


async def test_leaving_the_block_closes_the_socket_and_the_views(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_internet(seed=7) as internet:
        node, peer = await public_pair(internet)
        async with open_shared_endpoint(node) as shared:
            pass
        assert shared.closed and all(shared.view(protocol).closed for protocol in Traffic)
        with pytest.raises(trio.ClosedResourceError):
            await node.send_to(QUIC_SHORT, peer.local_address)


async def test_the_socket_closing_underneath_closes_the_views(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_internet(seed=8) as internet:
        node, _peer = await public_pair(internet)
        async with open_shared_endpoint(node) as shared:
            node.close()
            with pytest.raises(trio.ClosedResourceError):
                await shared.view(Traffic.QUIC).receive_from()
            assert shared.closed


# -- real sockets -----------------------------------------------------------------------------


async def test_real_sockets_on_loopback_share_one_port() -> None:
    stack = RealUdpStack(["127.0.0.1"])
    with trio.fail_after(5):
        async with await stack.bind(("127.0.0.1", 0)) as peer:
            node = await stack.bind(("127.0.0.1", 0))
            async with open_shared_endpoint(node) as shared:
                for protocol, data in [
                    (Traffic.STUN, STUN_REQUEST),
                    (Traffic.RELAY, RELAY_FRAME),
                    (Traffic.PUNCH, PUNCH_FRAME),
                    (Traffic.QUIC, QUIC_LONG),
                ]:
                    await shared.view(protocol).send_to(data, peer.local_address)
                    assert await peer.receive_from() == (data, node.local_address)
                    await peer.send_to(JUNK[1], node.local_address)
                    await peer.send_to(data, node.local_address)
                    view = shared.view(protocol)
                    assert await view.receive_from() == (data, peer.local_address)
                statistics = shared.statistics()
    assert statistics.unclassified == 4
    assert [statistics[protocol] for protocol in Traffic] == [zeros(received=1, sent=1)] * 4
