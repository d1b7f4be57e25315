"""The behaviour both UDP implementations promise, run against each: real sockets on 127.0.0.1
and a host on the simulated internet."""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator

import attrs
import pytest
import trio

from macula_nat.net import MAX_DATAGRAM_SIZE, RealUdpStack, UdpEndpoint, UdpStack
from macula_nat.net.sim import open_internet


@attrs.frozen
class Place:
    stack: UdpStack
    ip: str


@pytest.fixture(params=["real", "sim"])
async def place(request: pytest.FixtureRequest) -> AsyncIterator[Place]:
    if request.param == "real":
        yield Place(RealUdpStack(["127.0.0.1"]), "127.0.0.1")
    else:
        async with open_internet(seed=3) as internet:
            yield Place(internet.add_host(["203.0.113.50"]), "203.0.113.50")


async def pair(place: Place) -> tuple[UdpEndpoint, UdpEndpoint]:
    return await place.stack.bind((place.ip, 0)), await place.stack.bind((place.ip, 0))


async def test_binding_port_zero_picks_a_port(place: Place) -> None:
    async with await place.stack.bind((place.ip, 0)) as endpoint:
        ip, port = endpoint.local_address
        assert ip == place.ip
        assert 1 <= port <= 65535


async def test_datagrams_arrive_whole_with_their_source(place: Place) -> None:
    a, b = await pair(place)
    async with a, b:
        payloads = [b"one", b"", b"x" * 1500, b"y" * MAX_DATAGRAM_SIZE]
        for payload in payloads:
            await a.send_to(payload, b.local_address)
        received = [await b.receive_from() for _ in payloads]

        assert received == [(payload, a.local_address) for payload in payloads]
        await b.send_to(b"back", a.local_address)
        assert await a.receive_from() == (b"back", b.local_address)


async def test_oversized_datagram_raises_value_error(place: Place) -> None:
    async with await place.stack.bind((place.ip, 0)) as endpoint:
        with pytest.raises(ValueError):
            await endpoint.send_to(b"z" * (MAX_DATAGRAM_SIZE + 1), endpoint.local_address)


@pytest.mark.parametrize(
    "address", [("not-an-ip", 9), (None, 9), ("::1", 9), ("127.0.0.1", 0), ("127.0.0.1", 70000)]
)
async def test_bad_destination_raises_value_error(
    place: Place, address: tuple[object, object]
) -> None:
    async with await place.stack.bind((place.ip, 0)) as endpoint:
        with pytest.raises(ValueError):
            await endpoint.send_to(b"z", address)  # type: ignore[arg-type]


async def test_datagram_to_nobody_is_silently_lost(place: Place) -> None:
    a, b = await pair(place)
    gone = b.local_address
    await b.aclose()
    async with a, await place.stack.bind((place.ip, 0)) as c:
        await a.send_to(b"lost", gone)
        await a.send_to(b"marker", c.local_address)
        await c.send_to(b"reply", a.local_address)

        assert await c.receive_from() == (b"marker", a.local_address)
        assert await a.receive_from() == (b"reply", c.local_address)


async def test_closed_endpoint_refuses_send_and_receive(place: Place) -> None:
    a, b = await pair(place)
    await b.aclose()
    a.close()
    a.close()

    with pytest.raises(trio.ClosedResourceError):
        await a.receive_from()
    with pytest.raises(trio.ClosedResourceError):
        await a.send_to(b"x", b.local_address)


async def test_closing_wakes_a_blocked_receive(place: Place) -> None:
    endpoint = await place.stack.bind((place.ip, 0))
    outcome: list[BaseException] = []

    async def receive() -> None:
        try:
            await endpoint.receive_from()
        except trio.ClosedResourceError as error:
            outcome.append(error)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        await trio.testing.wait_all_tasks_blocked()
        endpoint.close()

    assert len(outcome) == 1


async def test_binding_a_port_in_use_raises_eaddrinuse(place: Place) -> None:
    async with await place.stack.bind((place.ip, 0)) as first:
        with pytest.raises(OSError) as raised:
            await place.stack.bind(first.local_address)
        assert raised.value.errno == errno.EADDRINUSE
        taken = first.local_address

    async with await place.stack.bind(taken) as again:
        assert again.local_address == taken


async def test_cancelled_send_sends_nothing(place: Place) -> None:
    a, b = await pair(place)
    async with a, b:
        with trio.CancelScope() as scope:
            scope.cancel()
            await a.send_to(b"cancelled", b.local_address)
        await a.send_to(b"sent", b.local_address)

        assert scope.cancelled_caught
        assert await b.receive_from() == (b"sent", a.local_address)


async def test_receive_is_cancellable(place: Place) -> None:
    async with await place.stack.bind((place.ip, 0)) as endpoint:
        with trio.move_on_after(0.01) as scope:
            await endpoint.receive_from()
        assert scope.cancelled_caught


async def test_stack_lists_its_addresses(place: Place) -> None:
    assert place.ip in place.stack.addresses


# -- the non-waiting operations and batches (issue 14) -------------------------------------------


async def _receive_all(endpoint: UdpEndpoint, count: int, most: int) -> list[list[bytes]]:
    """Batches of at most ``most`` until ``count`` datagrams arrived; their payloads."""
    batches: list[list[bytes]] = []
    with trio.fail_after(5):
        while sum(map(len, batches)) < count:
            batch = await endpoint.receive_batch(most)
            assert 1 <= len(batch) <= most
            batches.append([data for data, _ in batch])
    return batches


async def test_receive_batch_returns_datagrams_in_order_at_most_max(place: Place) -> None:
    a, b = await pair(place)
    async with a, b:
        payloads = [b"%d" % i for i in range(10)]
        for payload in payloads:
            a.send_to_nowait(payload, b.local_address)

        batches = await _receive_all(b, len(payloads), 4)

        assert [data for batch in batches for data in batch] == payloads
        await a.send_to(b"last", b.local_address)
        assert await b.receive_batch() == [(b"last", a.local_address)]


async def test_receive_batch_bound_must_be_positive(place: Place) -> None:
    async with await place.stack.bind((place.ip, 0)) as endpoint:
        with pytest.raises(ValueError):
            await endpoint.receive_batch(0)


async def test_receive_from_nowait_would_block_until_a_datagram_waits(place: Place) -> None:
    a, b = await pair(place)
    async with a, b:
        with pytest.raises(trio.WouldBlock):
            b.receive_from_nowait()
        await a.send_to(b"one", b.local_address)
        await a.send_to(b"two", b.local_address)
        assert await b.receive_from() == (b"one", a.local_address)  # both have arrived by now
        assert b.receive_from_nowait() == (b"two", a.local_address)
        with pytest.raises(trio.WouldBlock):
            b.receive_from_nowait()


async def test_nowait_operations_check_like_the_awaited_ones(place: Place) -> None:
    a, b = await pair(place)
    with pytest.raises(ValueError):
        a.send_to_nowait(b"z" * (MAX_DATAGRAM_SIZE + 1), b.local_address)
    with pytest.raises(ValueError):
        a.send_to_nowait(b"z", ("::1", 9))
    await b.aclose()
    await a.aclose()
    with pytest.raises(trio.ClosedResourceError):
        a.send_to_nowait(b"x", b.local_address)
    with pytest.raises(trio.ClosedResourceError):
        a.receive_from_nowait()
    with pytest.raises(trio.ClosedResourceError):
        await a.receive_batch()


async def test_closing_wakes_a_blocked_receive_batch(place: Place) -> None:
    endpoint = await place.stack.bind((place.ip, 0))
    outcome: list[BaseException] = []

    async def receive() -> None:
        try:
            await endpoint.receive_batch()
        except trio.ClosedResourceError as error:
            outcome.append(error)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        await trio.testing.wait_all_tasks_blocked()
        endpoint.close()

    assert len(outcome) == 1


async def test_receive_batch_is_cancellable(place: Place) -> None:
    async with await place.stack.bind((place.ip, 0)) as endpoint:
        with trio.move_on_after(0.01) as scope:
            await endpoint.receive_batch()
        assert scope.cancelled_caught
