"""Observer benchmarks: Binding responses per second against a bare trio UDP echo server.

Both servers run on 127.0.0.1 in this process and face the same client loop: a raw trio socket
sending a Binding request and waiting for the datagram that comes back. The echo server returns
the request unread; the observer parses it, applies the rate limit (set out of the way here),
builds the RFC 5780 answer and counts. The ratio is what a request costs the observer beyond
moving the datagram.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable

import trio

from macula_nat.nat.binding import ObserverAddresses, answer
from macula_nat.nat.observer import Observer, open_observer
from macula_nat.net import Address, RealUdpStack
from macula_nat.wire import stun

from .timing import Figure, now

ROUND_TRIPS = 2_400
CLIENTS = 8
LOOPBACK = "127.0.0.1"
UNLIMITED = 1e12
"""Rate and burst that keep the rate limit out of the measurement (one source sends it all)."""


async def _client_loop(server: Address, request: bytes, n: int) -> None:
    """Send ``request`` and wait for the reply, ``n`` times in a row."""
    with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        await client.bind((LOOPBACK, 0))
        for _ in range(n):
            await client.sendto(request, server)
            await client.recvfrom(2048)


async def _responses_per_second(server: Address, clients: int, n: int) -> float:
    """Replies a second with ``clients`` loops running at once, ``n`` round trips each."""
    request = stun.binding_request().encode()
    start = now()
    async with trio.open_nursery() as nursery:
        for _ in range(clients):
            nursery.start_soon(_client_loop, server, request, n)
    return clients * n / (now() - start)


async def _with_echo(measure: Callable[[Address], Awaitable[float]]) -> float:
    with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        await server.bind((LOOPBACK, 0))

        async def echo() -> None:
            while True:
                data, source = await server.recvfrom(2048)
                await server.sendto(data, source)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(echo)
            result = await measure(server.getsockname())
            nursery.cancel_scope.cancel()
    return result


async def _with_observer(measure: Callable[[Address], Awaitable[float]]) -> float:
    observer = Observer(RealUdpStack([LOOPBACK]), (LOOPBACK, 0), rate=UNLIMITED, burst=UNLIMITED)
    async with open_observer(observer) as ref:
        addresses = await ref.addresses()
        return await measure(addresses.primary)


async def _side_by_side(clients: int, rounds: int = 9) -> tuple[float, float]:
    """Best (highest) responses/s of the observer and of the echo server, rounds interleaved so
    that a noisy machine disturbs both alike."""
    n = ROUND_TRIPS // clients

    async def measure(server: Address) -> float:
        return await _responses_per_second(server, clients, n)

    observer, echo = 0.0, 0.0
    for _ in range(rounds):
        observer = max(observer, await _with_observer(measure))
        echo = max(echo, await _with_echo(measure))
    return observer, echo


def _answer_cost(n: int) -> float:
    """Seconds per call of the pure core on a typical request (RFC 5780 address set)."""
    addresses = ObserverAddresses(("198.51.100.10", 3478), ("198.51.100.11", 3479))
    request = stun.binding_request().encode()
    source = ("203.0.113.5", 40000)
    start = now()
    for _ in range(n):
        answer(request, source, addresses.primary, addresses)
    return (now() - start) / n


async def run() -> list[Figure]:
    one_observer, one_echo = await _side_by_side(1)
    many_observer, many_echo = await _side_by_side(CLIENTS)
    core = min(_answer_cost(20_000) for _ in range(3))
    return [
        Figure(
            "observer: Binding responses/s, 1 client, vs bare trio echo",
            one_observer,
            "resp/s",
            one_echo,
            ">= 0.5x",
        ),
        Figure(
            f"observer: Binding responses/s, {CLIENTS} clients, vs bare trio echo",
            many_observer,
            "resp/s",
            many_echo,
            ">= 0.5x",
        ),
        Figure("observer: answer() per request (parse, decide, encode)", core * 1e6, "us"),
    ]


if __name__ == "__main__":

    async def _main() -> None:
        for figure in await run():
            print(figure.render(), flush=True)

    trio.run(_main)
