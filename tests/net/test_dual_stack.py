"""Dual-stack endpoints (issue 13): one endpoint on ``::`` with IPv4 and IPv6 peers, run against
real sockets on loopback (127.0.0.1 and ::1) and a simulated host with both families."""

from __future__ import annotations

import errno
import socket
from collections.abc import AsyncIterator

import attrs
import pytest

from macula_nat.net import RealUdpStack, UdpStack, real
from macula_nat.net.address import ip_version
from macula_nat.net.sim import open_internet


@attrs.frozen
class Place:
    stack: UdpStack
    ipv4: str
    ipv6: str


def _loopback_ipv6_works() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture(params=["real", "sim"])
async def place(request: pytest.FixtureRequest) -> AsyncIterator[Place]:
    if request.param == "real":
        if not _loopback_ipv6_works():
            pytest.skip("this machine has no IPv6 loopback (::1)")
        yield Place(RealUdpStack(["127.0.0.1", "::1"]), "127.0.0.1", "::1")
    else:
        async with open_internet(seed=3) as internet:
            yield Place(internet.add_host(["203.0.113.50", "2001:db8::50"]), "203.0.113.50",
                        "2001:db8::50")  # fmt: skip


async def test_one_endpoint_talks_to_both_families_with_plain_addresses(place: Place) -> None:
    async with (
        await place.stack.bind(("::", 0), dual_stack=True) as dual,
        await place.stack.bind((place.ipv4, 0)) as four,
        await place.stack.bind((place.ipv6, 0)) as six,
    ):
        port = dual.local_address[1]
        assert dual.local_address == ("::", port)
        await four.send_to(b"from four", (place.ipv4, port))
        await six.send_to(b"from six", (place.ipv6, port))
        received = {await dual.receive_from() for _ in range(2)}
        assert received == {(b"from four", four.local_address), (b"from six", six.local_address)}
        await dual.send_to(b"to four", four.local_address)
        dual.send_to_nowait(b"to six", six.local_address)
        assert await four.receive_from() == (b"to four", (place.ipv4, port))
        assert await six.receive_from() == (b"to six", (place.ipv6, port))


async def test_a_dual_stack_port_is_taken_in_both_families(place: Place) -> None:
    async with await place.stack.bind(("::", 0), dual_stack=True) as dual:
        port = dual.local_address[1]
        for wildcard in ("0.0.0.0", "::"):
            with pytest.raises(OSError) as caught:
                await place.stack.bind((wildcard, port))
            assert caught.value.errno == errno.EADDRINUSE
    for wildcard in ("0.0.0.0", "::"):  # closed: both free again
        async with await place.stack.bind((wildcard, port)):
            pass


async def test_a_dual_stack_port_in_use_by_either_family_is_refused(place: Place) -> None:
    async with await place.stack.bind(("0.0.0.0", 0)) as four:
        with pytest.raises(OSError) as caught:
            await place.stack.bind(("::", four.local_address[1]), dual_stack=True)
        assert caught.value.errno == errno.EADDRINUSE


@pytest.mark.parametrize("ip", ["0.0.0.0", "127.0.0.1", "::1"])
async def test_dual_stack_needs_the_ipv6_wildcard(place: Place, ip: str) -> None:
    with pytest.raises(ValueError, match="wildcard"):
        await place.stack.bind((ip, 0), dual_stack=True)


async def test_an_ipv6_only_endpoint_still_refuses_ipv4(place: Place) -> None:
    async with await place.stack.bind(("::", 0)) as six:
        with pytest.raises(ValueError, match="cannot send"):
            await six.send_to(b"x", (place.ipv4, 9))


@pytest.mark.parametrize("kind", ["real", "sim"])
async def test_a_dual_stack_endpoint_answers_from_the_address_asked(kind: str) -> None:
    """On a host with two addresses of one version (an RFC 5780 gateway's), the endpoint on
    ``::`` answers a peer from the address that peer sent to, not from the kernel's choice of
    source: a stateful firewall in front of the peer passes only the former."""
    async with open_internet(seed=4) as internet:
        stack: UdpStack
        if kind == "real":
            stack = peer_stack = RealUdpStack(["127.0.0.1", "127.0.0.2"])
            asked, other = "127.0.0.2", "127.0.0.1"  # the kernel answers 127.0.0.1 from .1
            peer_ip = "127.0.0.1"
        else:
            stack = internet.add_host(["203.0.113.50", "203.0.113.51", "2001:db8::50"])
            asked, other = "203.0.113.51", "203.0.113.50"
            peer_ip = "203.0.113.60"
            peer_stack = internet.add_host([peer_ip])
        async with (
            await stack.bind(("::", 0), dual_stack=True) as dual,
            await peer_stack.bind((peer_ip, 0)) as peer,
        ):
            port = dual.local_address[1]
            for destination in (asked, other, asked):
                await peer.send_to(b"ask", (destination, port))
                data, source = await dual.receive_from()
                assert (data, source) == (b"ask", peer.local_address)
                await dual.send_to(b"answer", source)
                assert await peer.receive_from() == (b"answer", (destination, port))


async def test_a_dual_stack_stream_listener_takes_both_versions(place: Place) -> None:
    """One TCP listener on ``::`` (a dual-stack relay's TCP/TLS side): connections to an
    address of either version arrive, IPv4 peers under plain IPv4 addresses."""
    listener = await place.stack.listen_stream(("::", 0), dual_stack=True)
    port = listener.local_address[1]
    try:
        for ip in (place.ipv4, place.ipv6):
            stream, local = await place.stack.connect_stream((ip, port))
            accepted, peer = await listener.accept()
            assert peer == local and ip_version(peer[0]) == ip_version(ip)
            await stream.send_all(b"hello")
            assert await accepted.receive_some(5) == b"hello"
            await stream.aclose()
            await accepted.aclose()
    finally:
        await listener.aclose()
    with pytest.raises(ValueError, match="IPv6 wildcard"):
        await place.stack.listen_stream((place.ipv4, 0), dual_stack=True)


async def test_a_flood_of_new_sources_forgets_the_quiet_peers_not_the_latest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The peers whose local address a dual-stack endpoint remembers are bounded; new sources
    past the bound push out the one heard from longest ago, one each, so a peer that spoke
    recently is still answered from the address it asked."""
    monkeypatch.setattr(real, "_REPLY_FROM", 3)
    stack = RealUdpStack(["127.0.0.1", "127.0.0.2"])
    asked = "127.0.0.2"  # the kernel would answer from 127.0.0.1
    async with await stack.bind(("::", 0), dual_stack=True) as dual:
        port = dual.local_address[1]
        peers = [await stack.bind(("127.0.0.1", 0)) for _ in range(5)]
        try:
            for peer in peers:  # 0 and 1 are forgotten, 2..4 remembered
                await peer.send_to(b"ask", (asked, port))
                assert (await dual.receive_from())[1] == peer.local_address
            for index, peer in enumerate(peers):
                await dual.send_to(b"answer", peer.local_address)
                _, source = await peer.receive_from()
                assert source == ((asked if index >= 2 else "127.0.0.1"), port)
        finally:
            for peer in peers:
                peer.close()
