"""The relay over TCP/TLS (framed and WebSocket) on loopback: nodes on UDP and TCP share one
relay, and what an attacker can do to the listener stays bounded."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import trio

from macula_nat.identity import NodeKey
from macula_nat.net import RealUdpStack
from macula_nat.net.address import Address
from macula_nat.relay import (
    RelayClient,
    RelayNode,
    TcpListenerStatistics,
    TcpRelayConfig,
    open_relay,
    open_relay_client,
    open_tcp_relay_endpoint,
)
from macula_nat.relay.stream_framing import PREFACE
from macula_nat.relay.tcp_link import LinkError, connect_link
from macula_nat.relay.tcp_server import TcpRelayListener
from macula_nat.relay.tls import client_context, server_context

from .support import connect, exchange

LOOPBACK = "127.0.0.1"
BOUND = 10.0
"""Real seconds any one step may take before the test fails rather than hangs."""


@asynccontextmanager
async def running_relay(tcp: TcpRelayConfig | None = None) -> AsyncIterator[RelayNode]:
    relay = RelayNode(RealUdpStack([LOOPBACK]), (LOOPBACK, 0), NodeKey.generate(), tcp=tcp)
    async with open_relay(relay):
        await relay.enable()
        yield relay


async def udp_node(stack: AsyncExitStack, relay: RelayNode) -> RelayClient:
    socket = await RealUdpStack([LOOPBACK]).bind((LOOPBACK, 0))
    await stack.enter_async_context(socket)
    client = RelayClient(socket, relay.address, NodeKey.generate(), relay.node_id)
    return await stack.enter_async_context(open_relay_client(client, timeout=BOUND))


async def tcp_node(
    stack: AsyncExitStack, relay: RelayNode, websocket: str | None = None
) -> RelayClient:
    endpoint = await stack.enter_async_context(
        open_tcp_relay_endpoint(relay.address, websocket=websocket, timeout=BOUND)
    )
    client = RelayClient(endpoint, relay.address, NodeKey.generate(), relay.node_id)
    return await stack.enter_async_context(open_relay_client(client, timeout=BOUND))


async def test_nodes_on_udp_tcp_and_websocket_register_with_one_relay_and_relay_both_ways() -> None:
    async with running_relay(TcpRelayConfig()) as relay, AsyncExitStack() as stack:
        assert relay.tcp_address == relay.address  # one port number for both
        on_udp = await udp_node(stack, relay)
        on_tcp = await tcp_node(stack, relay)
        on_ws = await tcp_node(stack, relay, websocket="/macula-relay")
        for a, b in [(on_udp, on_tcp), (on_tcp, on_ws), (on_ws, on_udp)]:
            mine, theirs = await connect(a, b)
            assert await exchange(mine, theirs, b"there") == b"there"
            assert await exchange(theirs, mine, b"back") == b"back"
        statistics = relay.tcp_statistics()
        assert on_tcp.registration.value is not None
        observed = on_tcp.registration.value.observed
    assert statistics is not None
    assert statistics.accepted == 2 and statistics.links == 2
    assert observed == on_tcp.endpoint.local_address  # the relay saw the TCP link's address


async def test_a_relay_without_tcp_has_no_listener() -> None:
    async with running_relay() as relay:
        assert relay.tcp_address is None and relay.tcp_statistics() is None
        with pytest.raises(OSError):
            async with open_tcp_relay_endpoint(relay.address, timeout=BOUND):
                pass  # pragma: no cover


async def test_a_wrong_websocket_path_is_answered_404_and_closed() -> None:
    async with running_relay(TcpRelayConfig()) as relay:
        with pytest.raises(LinkError, match="404"):
            async with open_tcp_relay_endpoint(relay.address, websocket="/elsewhere"):
                pass  # pragma: no cover
        await wait_for(lambda: statistics(relay).handshake_failures == 1)


def statistics(relay: RelayNode) -> TcpListenerStatistics:
    result = relay.tcp_statistics()
    assert result is not None
    return result


async def wait_for(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` (real time: the listener runs on real sockets) for up to ``BOUND``."""
    polls = 1000
    for _ in range(polls):
        if condition():
            return
        await trio.sleep(BOUND / polls)
    raise AssertionError(f"not true within {BOUND} s")


async def closed_by_peer(stream: trio.abc.Stream) -> bool:
    """Whether the peer closes ``stream`` within the bound (reading whatever it sends)."""
    with trio.move_on_after(BOUND):
        try:
            while await stream.receive_some(4096):
                pass
        except trio.BrokenResourceError:
            pass
        return True
    return False


async def tls_to(address: Address) -> trio.SSLStream[trio.SocketStream]:
    stream = await trio.open_tcp_stream(*address)
    tls = trio.SSLStream(stream, client_context(), server_hostname=None)
    await tls.do_handshake()
    return tls


async def test_a_slowloris_is_closed_at_the_handshake_deadline() -> None:
    config = TcpRelayConfig(handshake_timeout=0.3)
    async with running_relay(config) as relay:
        address = relay.tcp_address
        assert address is not None
        silent = await trio.open_tcp_stream(*address)  # says nothing, not even TLS
        tls = await tls_to(address)  # TLS, then no preface
        await tls.send_all(PREFACE[:5])
        started = trio.current_time()
        assert await closed_by_peer(silent)
        assert await closed_by_peer(tls)
        took = trio.current_time() - started
        await wait_for(lambda: statistics(relay).handshake_failures == 2)
        await wait_for(lambda: statistics(relay).links == 0)
    assert took < 0.3 + 2.0


async def test_links_are_capped_per_source_and_a_closed_link_frees_its_slot() -> None:
    config = TcpRelayConfig(max_links_per_source=2)
    async with running_relay(config) as relay:
        address = relay.tcp_address
        assert address is not None
        first, second = await tls_to(address), await tls_to(address)
        third = await trio.open_tcp_stream(*address)
        assert await closed_by_peer(third)
        assert statistics(relay).refused == 1
        await first.aclose()
        await wait_for(lambda: statistics(relay).links == 1)
        fourth = await tls_to(address)  # the slot is free again
        await fourth.send_all(PREFACE)
        await wait_for(lambda: statistics(relay).accepted == 1)
        await second.aclose()
        await fourth.aclose()


async def tls_from(source_ip: str, address: Address) -> trio.SSLStream[trio.SocketStream]:
    """A finished link (TLS and preface) from ``source_ip`` on loopback."""
    stream = await trio.open_tcp_stream(*address, local_address=source_ip)
    tls = trio.SSLStream(stream, client_context(), server_hostname=None)
    await tls.do_handshake()
    await tls.send_all(PREFACE)
    return tls


async def test_a_full_listener_takes_a_link_from_the_largest_holder_for_a_new_source() -> None:
    """Many addresses of one attacker may fill the listener, but only until others come: a
    newcomer gets the oldest link of the source holding the most, while that one holds at
    least two more than the newcomer; between equals the newcomer is refused."""
    config = TcpRelayConfig(max_links=2, max_links_per_source=2)
    async with running_relay(config) as relay:
        address = relay.tcp_address
        assert address is not None
        oldest = await tls_from("127.0.0.1", address)
        await tls_from("127.0.0.1", address)
        await wait_for(lambda: statistics(relay).accepted == 2)
        await tls_from("127.0.0.2", address)
        assert await closed_by_peer(oldest)
        await wait_for(lambda: statistics(relay).accepted == 3)
        assert statistics(relay).evicted == 1 and statistics(relay).links == 2
        third = await trio.open_tcp_stream(*address, local_address="127.0.0.3")
        assert await closed_by_peer(third)  # one link each: nobody holds more than it would
        assert statistics(relay).refused == 1 and statistics(relay).evicted == 1


async def test_a_link_silent_for_the_idle_timeout_is_closed() -> None:
    async with running_relay(TcpRelayConfig(idle_timeout=0.3)) as relay:
        address = relay.tcp_address
        assert address is not None
        tls = await tls_to(address)
        await tls.send_all(PREFACE)  # a finished link that then says nothing
        await wait_for(lambda: statistics(relay).accepted == 1)
        assert await closed_by_peer(tls)
        await wait_for(lambda: statistics(relay).idle_closed == 1)
        await wait_for(lambda: statistics(relay).links == 0)


@pytest.mark.parametrize("websocket", [None, "/macula-relay"])
async def test_a_frame_over_the_limit_closes_its_link_clearly(
    websocket: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    config = TcpRelayConfig(max_frame=512)
    async with running_relay(config) as relay:
        address = relay.tcp_address
        assert address is not None
        tls = await tls_to(address)
        link = await connect_link(tls, websocket=websocket, max_frame=0xFFFF)
        await link.send([b"\x04" + bytes(600)])
        assert await closed_by_peer(tls)
        await wait_for(lambda: statistics(relay).protocol_errors == 1)
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("closed" in line and "512" in line for line in said), said


async def test_a_peer_that_stops_reading_costs_dropped_datagrams_not_memory_or_other_links() -> (
    None
):
    limit = 16 * 1024
    config = TcpRelayConfig(send_buffer=limit)
    context = await trio.to_thread.run_sync(server_context, NodeKey.generate())
    socket = await RealUdpStack([LOOPBACK]).listen_stream((LOOPBACK, 0))
    listener = TcpRelayListener(socket, context, config)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(listener.serve)
        address = listener.local_address
        stalled = await connect_link(await tls_to(address))
        lively = await connect_link(await tls_to(address))
        await stalled.send([b"\x04first"])
        await lively.send([b"\x04first"])
        sources: dict[bytes, Address] = {}
        with trio.fail_after(BOUND):
            for _ in range(2):
                frame, source = await listener.receive_from()
                sources[frame] = source
        stalled_at, lively_at = list(listener._links)
        peak = 0
        for _ in range(5000):  # 5 MB at a peer that never reads
            listener.send_to_nowait(bytes(1000), stalled_at)
            peak = max(peak, listener._links[stalled_at].queue.queued)
            await trio.lowlevel.checkpoint()
        listener.send_to_nowait(b"\x04still here", lively_at)
        with trio.fail_after(BOUND):
            assert await lively.receive() == b"\x04still here"
        dropped = listener.statistics().dropped
        nursery.cancel_scope.cancel()
    listener.close()
    assert peak <= limit
    assert dropped > 0


async def test_the_certificate_is_issued_by_the_relays_node_key() -> None:
    from cryptography import x509

    from macula_nat.relay.tls import relay_certificate

    key = NodeKey.generate()
    pem, _ = relay_certificate(key)
    certificate = x509.load_pem_x509_certificate(pem)
    key.private_key.public_key().verify(
        certificate.signature, certificate.tbs_certificate_bytes
    )  # raises if the node key did not sign it
    assert key.node_id.text() in certificate.subject.rfc4514_string()
    assert isinstance(server_context(key), ssl.SSLContext)
    await trio.lowlevel.checkpoint()
