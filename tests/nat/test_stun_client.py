"""STUN client transactions on the simulated internet: schedule, deadlines, demultiplexing."""

from __future__ import annotations

import attrs
import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from macula_nat.nat.errors import TransactionTimeout
from macula_nat.nat.stun_client import (
    Asked,
    RetransmitPolicy,
    StunClient,
    StunResponse,
    open_stun_client,
)
from macula_nat.net import Address, UdpEndpoint
from macula_nat.net.sim import Internet, LinkProfile, open_internet
from macula_nat.wire import stun

SERVER: Address = ("198.51.100.10", 3478)


async def endpoints(
    internet: Internet, client_link: LinkProfile | None = None
) -> tuple[UdpEndpoint, UdpEndpoint]:
    """A client endpoint on one public host and a server endpoint at `SERVER` on another."""
    client_host = internet.add_host(link=client_link)
    server_host = internet.add_host([SERVER[0]])
    client = await client_host.bind((client_host.addresses[0], 0))
    server = await server_host.bind(SERVER)
    return client, server


def success(request: stun.Message, source: Address, software: str | None = None) -> bytes:
    return stun.binding_success(request, source, software=software).encode()


async def respond_forever(server: UdpEndpoint) -> None:
    """A plain STUN server: every request gets its reflexive address."""
    while True:
        data, source = await server.receive_from()
        await server.send_to(success(stun.decode(data), source), source)


# -- the schedule, pure -----------------------------------------------------------------------


def test_the_default_schedule_is_rfc_8489s() -> None:
    policy = RetransmitPolicy()
    assert policy.transmission_offsets() == (0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5)
    assert policy.give_up_offset() == 39.5


def test_max_rto_stops_the_doubling() -> None:
    policy = RetransmitPolicy(rto=1.0, max_rto=2.0, max_transmissions=5, final_wait=3.0)
    assert policy.transmission_offsets() == (0.0, 1.0, 3.0, 5.0, 7.0)
    assert policy.give_up_offset() == 10.0


@given(st.floats(min_value=0.01, max_value=1000.0))
def test_a_schedule_for_a_timeout_fits_every_transmission_inside_it(timeout: float) -> None:
    policy = RetransmitPolicy.for_timeout(timeout)
    offsets = policy.transmission_offsets()
    assert len(offsets) == 7
    assert offsets[-1] < timeout
    assert policy.rto <= 0.5


def test_nonsense_policies_are_refused() -> None:
    with pytest.raises(ValueError, match="rto"):
        RetransmitPolicy(rto=0)
    with pytest.raises(ValueError, match="max_transmissions"):
        RetransmitPolicy(max_transmissions=0)
    with pytest.raises(ValueError, match="timeout"):
        RetransmitPolicy.for_timeout(-1.0)


# -- transactions -----------------------------------------------------------------------------


async def test_a_request_returns_the_reflexive_address(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_internet(seed=1) as internet, trio.open_nursery() as nursery:
        client_endpoint, server = await endpoints(internet, LinkProfile(latency=0.01))
        nursery.start_soon(respond_forever, server)
        async with open_stun_client(client_endpoint) as client:
            response = await client.request(SERVER)
        nursery.cancel_scope.cancel()
    assert response.is_success
    assert response.mapped_address == client_endpoint.local_address
    assert (response.source, response.destination) == (SERVER, SERVER)
    assert response.transmissions == 1
    assert response.elapsed == pytest.approx(0.02)
    assert client.statistics().pending == 0


@pytest.mark.parametrize(
    "own",
    [None, RetransmitPolicy(rto=0.1, max_rto=0.2, max_transmissions=3, final_wait=1.0)],
    ids=["the client's", "the request's"],
)
async def test_a_silent_server_sees_the_whole_schedule_then_the_request_fails(
    own: RetransmitPolicy | None, autojump_clock: trio.testing.MockClock
) -> None:
    """The client's schedule, or one a request brings (a shared socket's client serves callers
    with their own timing)."""
    schedule = own if own is not None else RetransmitPolicy()
    arrivals: list[float] = []

    async def record(server: UdpEndpoint) -> None:
        while True:
            await server.receive_from()
            arrivals.append(trio.current_time())

    async with open_internet(seed=2) as internet, trio.open_nursery() as nursery:
        client_endpoint, server = await endpoints(internet)
        nursery.start_soon(record, server)
        async with open_stun_client(client_endpoint) as client:
            start = trio.current_time()
            transmissions = schedule.max_transmissions
            with pytest.raises(TransactionTimeout, match=f"{transmissions} transmissions"):
                await client.request(SERVER, policy=own)
            failed_after = trio.current_time() - start
        nursery.cancel_scope.cancel()
    assert [t - start for t in arrivals] == pytest.approx(list(schedule.transmission_offsets()))
    assert failed_after == pytest.approx(schedule.give_up_offset())


async def test_the_deadline_cuts_the_schedule_short(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_internet(seed=3) as internet:
        client_endpoint, _server = await endpoints(internet)
        async with open_stun_client(client_endpoint) as client:
            start = trio.current_time()
            with pytest.raises(TransactionTimeout, match="3 transmissions"):
                await client.request(SERVER, deadline=start + 2.0)
            assert trio.current_time() - start == 2.0
            assert client.statistics().transmissions == 3  # at 0, 0.5 and 1.5 s


async def test_an_answer_stops_the_retransmissions(autojump_clock: trio.testing.MockClock) -> None:
    received: list[float] = []

    async def answer_the_third(server: UdpEndpoint) -> None:
        while True:
            data, source = await server.receive_from()
            received.append(trio.current_time())
            if len(received) == 3:
                await server.send_to(success(stun.decode(data), source), source)

    async with open_internet(seed=4) as internet, trio.open_nursery() as nursery:
        client_endpoint, server = await endpoints(internet, LinkProfile(latency=0.01))
        nursery.start_soon(answer_the_third, server)
        async with open_stun_client(client_endpoint) as client:
            response = await client.request(SERVER)
            await trio.sleep(60)
        nursery.cancel_scope.cancel()
    assert response.transmissions == 3
    assert response.elapsed == pytest.approx(1.5 + 0.02)
    assert len(received) == 3


async def test_concurrent_transactions_each_get_their_own_response(
    autojump_clock: trio.testing.MockClock,
) -> None:
    count = 30

    async def answer_in_reverse(server: UdpEndpoint) -> None:
        requests = [await server.receive_from() for _ in range(count)]
        for data, source in reversed(requests):
            request = stun.decode(data)
            await server.send_to(success(request, source, request.transaction_id.hex()), source)
            await trio.sleep(0.001)

    responses: dict[bytes, StunResponse] = {}

    async def one(client: StunClient) -> None:
        request = stun.binding_request()
        responses[request.transaction_id] = await client.request(SERVER, request)

    async with open_internet(seed=5) as internet, trio.open_nursery() as nursery:
        client_endpoint, server = await endpoints(internet)
        nursery.start_soon(answer_in_reverse, server)
        async with open_stun_client(client_endpoint) as client, trio.open_nursery() as requests:
            for _ in range(count):
                requests.start_soon(one, client)

    assert len(responses) == count
    for transaction_id, response in responses.items():
        assert response.message.transaction_id == transaction_id
        assert response.message.software == transaction_id.hex()
    statistics = client.statistics()
    assert (statistics.transactions, statistics.responses, statistics.pending) == (count, count, 0)


async def test_unrelated_and_malformed_datagrams_are_ignored(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def answer_after_noise(server: UdpEndpoint) -> None:
        data, source = await server.receive_from()
        request = stun.decode(data)
        real = stun.binding_success(request, source, software="real")
        other_id = stun.binding_success(stun.binding_request(), source).encode()
        corrupted = bytearray(real.encode())
        corrupted[-1] ^= 0xFF  # breaks the FINGERPRINT
        unknown = attrs.evolve(real, raw_attributes=[stun.RawAttribute(0x7F00, b"?")])
        noise = [
            b"\x40\x01 a QUIC-looking datagram",
            real.encode()[:24],  # truncated
            bytes(corrupted),
            other_id,  # another transaction
            stun.binding_request(request.transaction_id).encode(),  # a request, same id
            attrs.evolve(real, message_class=stun.MessageClass.INDICATION).encode(),
            attrs.evolve(real, method=0x003).encode(),  # another method, same id
            unknown.encode(),  # unknown comprehension-required attribute: discarded
        ]
        for datagram in noise:
            await server.send_to(datagram, source)
        await trio.sleep(0.1)
        await server.send_to(real.encode(), source)

    async with open_internet(seed=6) as internet, trio.open_nursery() as nursery:
        client_endpoint, server = await endpoints(internet)
        nursery.start_soon(answer_after_noise, server)
        async with open_stun_client(client_endpoint) as client:
            response = await client.request(SERVER)
    assert response.message.software == "real"
    statistics = client.statistics()
    assert (statistics.malformed, statistics.unmatched, statistics.responses) == (4, 4, 1)


async def test_a_late_answer_is_dropped(autojump_clock: trio.testing.MockClock) -> None:
    async with open_internet(seed=7) as internet:
        client_endpoint, server = await endpoints(internet)
        async with open_stun_client(client_endpoint) as client:
            with pytest.raises(TransactionTimeout):
                await client.request(SERVER, deadline=trio.current_time() + 1.0)
            data, source = await server.receive_from()
            await server.send_to(success(stun.decode(data), source), source)
            await trio.sleep(1.0)
            assert client.statistics().unmatched == 1


async def test_an_error_response_completes_the_transaction(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def refuse(server: UdpEndpoint) -> None:
        data, source = await server.receive_from()
        refusal = stun.error_response(stun.decode(data), 420, unknown_attributes=[0x0003])
        await server.send_to(refusal.encode(), source)

    async with open_internet(seed=8) as internet, trio.open_nursery() as nursery:
        client_endpoint, server = await endpoints(internet)
        nursery.start_soon(refuse, server)
        async with open_stun_client(client_endpoint) as client:
            response = await client.request(SERVER, stun.binding_request(change_ip=True))
    assert not response.is_success
    assert response.error_code == 420
    assert response.mapped_address is None


async def test_mapped_address_serves_rfc3489_servers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def answer_old_style(server: UdpEndpoint) -> None:
        data, source = await server.receive_from()
        request = stun.decode(data)
        old = stun.Message(
            message_class=stun.MessageClass.SUCCESS,
            transaction_id=request.transaction_id,
            mapped_address=source,
        )
        await server.send_to(old.encode(), source)

    async with open_internet(seed=9) as internet, trio.open_nursery() as nursery:
        client_endpoint, server = await endpoints(internet)
        nursery.start_soon(answer_old_style, server)
        async with open_stun_client(client_endpoint) as client:
            response = await client.request(SERVER)
    assert response.mapped_address == client_endpoint.local_address


@pytest.mark.parametrize("concurrent", [False, True])
async def test_loss_is_repaired_by_retransmission(
    concurrent: bool, autojump_clock: trio.testing.MockClock
) -> None:
    count = 40
    responses: list[StunResponse] = []

    async def one(client: StunClient) -> None:
        responses.append(await client.request(SERVER))

    lossy = LinkProfile(latency=0.02, jitter=0.01, loss=0.1)
    async with open_internet(seed=10) as internet, trio.open_nursery() as nursery:
        client_endpoint, server = await endpoints(internet, lossy)
        nursery.start_soon(respond_forever, server)
        async with open_stun_client(client_endpoint, RetransmitPolicy(rto=0.2)) as client:
            if concurrent:
                async with trio.open_nursery() as requests:
                    for _ in range(count):
                        requests.start_soon(one, client)
            else:
                for _ in range(count):
                    await one(client)
        nursery.cancel_scope.cancel()
    assert len(responses) == count
    assert all(r.mapped_address == client_endpoint.local_address for r in responses)
    assert sum(r.transmissions for r in responses) > count  # some needed retransmitting
    assert internet.statistics().lost > 0


async def test_a_shared_socket_feeds_the_client_from_its_own_demultiplexer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    others: list[bytes] = []

    async def demultiplex(endpoint: UdpEndpoint, client: StunClient) -> None:
        while True:
            data, source = await endpoint.receive_from()
            if not client.feed(data, source):
                others.append(data)

    async def answer_and_chatter(server: UdpEndpoint) -> None:
        data, source = await server.receive_from()
        await server.send_to(b"\xc0 QUIC long header", source)
        await server.send_to(success(stun.decode(data), source), source)

    async with open_internet(seed=11) as internet, trio.open_nursery() as nursery:
        client_endpoint, server = await endpoints(internet)
        client = StunClient(client_endpoint)
        nursery.start_soon(demultiplex, client_endpoint, client)
        nursery.start_soon(answer_and_chatter, server)
        response = await client.request(SERVER)
        nursery.cancel_scope.cancel()
    assert response.is_success
    assert others == [b"\xc0 QUIC long header"]


async def test_started_means_the_first_request_is_on_the_wire(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_internet(seed=12) as internet:
        client_endpoint, _server = await endpoints(internet, LinkProfile(latency=0.5))
        async with open_stun_client(client_endpoint) as client, trio.open_nursery() as nursery:
            before = trio.current_time()
            await nursery.start(client.request, SERVER)
            assert trio.current_time() == before
            assert client.statistics().transmissions == 1
            assert internet.statistics().in_flight == 1
            nursery.cancel_scope.cancel()


async def test_cancelling_a_request_forgets_it(autojump_clock: trio.testing.MockClock) -> None:
    async with open_internet(seed=13) as internet:
        client_endpoint, _server = await endpoints(internet)
        async with open_stun_client(client_endpoint) as client:
            with trio.move_on_after(1.0) as scope:
                await client.request(SERVER)
            assert scope.cancelled_caught
            assert client.statistics().pending == 0


async def test_requests_are_checked(autojump_clock: trio.testing.MockClock) -> None:
    async with open_internet(seed=14) as internet:
        client_endpoint, _server = await endpoints(internet)
        async with open_stun_client(client_endpoint) as client:
            request = stun.binding_request()
            with pytest.raises(ValueError, match="only requests"):
                response = stun.binding_success(request, SERVER)
                await client.request(SERVER, response)
            async with trio.open_nursery() as nursery:
                await nursery.start(client.request, SERVER, request)
                with pytest.raises(ValueError, match="already pending"):
                    await client.request(SERVER, request)
                nursery.cancel_scope.cancel()
            with pytest.raises(ValueError, match="port 0"):
                await client.request((SERVER[0], 0))


async def test_the_receive_loop_ends_when_the_endpoint_closes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_internet(seed=15) as internet:
        client_endpoint, _server = await endpoints(internet)
        client = StunClient(client_endpoint)
        with trio.fail_after(1.0):
            async with trio.open_nursery() as nursery:
                await nursery.start(client.run)
                client_endpoint.close()


async def test_the_client_remembers_when_it_asked_each_destination_and_the_answer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    quick = RetransmitPolicy(rto=0.1, max_rto=0.1, max_transmissions=1, final_wait=1.0)
    async with open_internet(seed=2) as internet, trio.open_nursery() as nursery:
        client_endpoint, server = await endpoints(internet)
        async with open_stun_client(client_endpoint) as client:
            assert client.last_asked(SERVER) is None
            serving = trio.CancelScope()

            async def serve() -> None:
                with serving:
                    await respond_forever(server)

            nursery.start_soon(serve)
            asked_at = trio.current_time()
            response = await client.request(SERVER)
            assert client.last_asked(SERVER) == Asked(asked_at, response.mapped_address)
            serving.cancel()
            await trio.sleep(5)
            again_at = trio.current_time()
            with pytest.raises(TransactionTimeout):
                await client.request(SERVER, policy=quick)
            # asked again, unanswered: the mapping learned last time is kept
            assert client.last_asked(SERVER) == Asked(again_at, response.mapped_address)
        nursery.cancel_scope.cancel()
