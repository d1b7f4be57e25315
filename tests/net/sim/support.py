"""Shared pieces of the simulated-internet tests."""

from __future__ import annotations

import trio

from macula_nat.net import Address, UdpEndpoint
from macula_nat.net.sim import Internet, LinkProfile, SimHost

PATIENCE = 60.0
"""Simulated seconds to wait for a datagram that must arrive; the mock clock makes it free."""

SERVER_IPS = (("198.51.100.10", "198.51.100.11"), ("198.51.100.20", "198.51.100.21"))
SERVER_PORTS = (3478, 3479)


async def bind_servers(internet: Internet, link: LinkProfile | None = None) -> list[UdpEndpoint]:
    """Two public servers with two IPs and two ports each: eight endpoints, ordered by server,
    then IP, then port."""
    endpoints: list[UdpEndpoint] = []
    for index, ips in enumerate(SERVER_IPS):
        host = internet.add_host(ips, name=f"server{index + 1}", link=link)
        for ip in ips:
            for port in SERVER_PORTS:
                endpoints.append(await host.bind((ip, port)))
    return endpoints


async def receive_all(
    endpoint: UdpEndpoint, limit: int, timeout: float = 1.0
) -> list[tuple[bytes, Address]]:
    """What arrives within ``timeout`` of simulated time, at most ``limit`` datagrams."""
    received: list[tuple[bytes, Address]] = []
    with trio.move_on_after(timeout):
        for _ in range(limit):
            received.append(await endpoint.receive_from())
    return received


async def receive_one(endpoint: UdpEndpoint) -> tuple[bytes, Address]:
    """The next datagram, which must arrive: fail rather than hang."""
    with trio.fail_after(PATIENCE):
        return await endpoint.receive_from()


async def bind_at(host: SimHost) -> UdpEndpoint:
    """An endpoint on the host's first address, so its local address is a destination."""
    return await host.bind((host.addresses[0], 0))


async def observe(client: UdpEndpoint, server: UdpEndpoint) -> Address:
    """The address ``server`` sees ``client``'s datagrams come from."""
    await client.send_to(b"?", server.local_address)
    _, source = await receive_one(server)
    return source
