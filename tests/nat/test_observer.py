"""The observer actor on the simulated internet (MockClock) and on real loopback sockets.

Simulated tests take pytest-trio's ``autojump_clock``; the real-socket tests run on the real clock
(the mock clock would jump past their timeouts while the kernel is still delivering).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess

import pytest
import trio
import trio.testing

from macula_nat.actors import StartFailed, open_actor
from macula_nat.cli.arguments import parse_address
from macula_nat.cli.observe import observe_main
from macula_nat.cli.parsers import add_observe_parser
from macula_nat.nat.binding import ObserverAddresses, wire_size
from macula_nat.nat.observer import (
    GetObserverStatistics,
    Observer,
    ObserverStatistics,
    open_observer,
)
from macula_nat.net import Address, RealUdpStack, UdpEndpoint
from macula_nat.net.sim import (
    PRESET_CHAINS,
    UDP_PRESETS,
    Internet,
    Preset,
    SimHost,
    add_site,
    open_internet,
)
from macula_nat.wire import stun
from macula_nat.wire.stun import AttributeType, Message, MessageClass, RawAttribute

IP1, IP2 = "198.51.100.10", "198.51.100.11"
P1, P2 = 3478, 3479
PRIMARY: Address = (IP1, P1)
ALTERNATE: Address = (IP2, P2)
NO_ANSWER = 5.0
"""Simulated seconds after which a response counts as never coming (free under MockClock)."""


def observer_host(internet: Internet) -> SimHost:
    return internet.add_host([IP1, IP2], name="observer")


async def transact(
    client: UdpEndpoint, request: Message | bytes, to: Address = PRIMARY
) -> tuple[Message, Address] | None:
    """Send one request; the decoded response and where it came from, or None if none came."""
    data = request.encode() if isinstance(request, Message) else request
    await client.send_to(data, to)
    with trio.move_on_after(NO_ANSWER):
        response, source = await client.receive_from()
        return stun.decode(response), source
    return None


async def answered(client: UdpEndpoint, request: Message, to: Address = PRIMARY) -> Message:
    result = await transact(client, request, to)
    assert result is not None, f"no answer to {request} sent to {to}"
    return result[0]


async def receive_all(endpoint: UdpEndpoint, limit: int) -> list[tuple[bytes, Address]]:
    received: list[tuple[bytes, Address]] = []
    with trio.move_on_after(NO_ANSWER):
        for _ in range(limit):
            received.append(await endpoint.receive_from())
    return received


def expected_mapping(preset: Preset) -> str:
    """The mapping behaviour a host behind ``preset`` shows to the outside: the strictest."""
    kinds = {str(behavior.mapping) for behavior in PRESET_CHAINS[preset]}
    return next((kind for kind in ("pd", "hd") if kind in kinds), "ei")


# -- what clients learn -------------------------------------------------------------------------


@pytest.mark.parametrize("preset", UDP_PRESETS)
async def test_clients_behind_every_preset_learn_their_public_mapping(
    preset: Preset, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_internet(seed=21) as internet:
        host = observer_host(internet)
        site = add_site(internet.public, preset, name="client")
        async with open_observer(Observer(host, PRIMARY, ALTERNATE)):
            client = await site.host.bind()
            # RFC 5780 mapping tests I, II and III: primary, alternate IP, alternate IP and port.
            seen: list[Address] = []
            for to in (PRIMARY, (IP2, P1), ALTERNATE):
                mapped = (await answered(client, stun.binding_request(), to)).xor_mapped_address
                assert mapped is not None
                seen.append(mapped)
            mappings = {m.external for nat in site.nats[:1] for m in nat.mappings()}

    if not site.nats:
        assert seen == [(site.host.addresses[0], client.local_address[1])] * 3
        return
    assert set(seen) <= mappings
    assert {ip for ip, _ in seen} == {site.nats[0].public_addresses[0]}
    first, second, third = seen
    mapping = expected_mapping(preset)
    assert (first == second) == (mapping == "ei")
    assert (second == third) == (mapping in ("ei", "hd"))


@pytest.mark.parametrize(
    ("change_ip", "change_port", "origin"),
    [
        (False, False, PRIMARY),
        (True, False, (IP2, P1)),
        (False, True, (IP1, P2)),
        (True, True, ALTERNATE),
    ],
)
async def test_change_request_is_answered_from_the_address_asked_for(
    change_ip: bool, change_port: bool, origin: Address, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_internet(seed=22) as internet:
        host = observer_host(internet)
        client_host = internet.add_host(["203.0.113.5"])
        async with open_observer(Observer(host, PRIMARY, ALTERNATE)) as observer:
            client = await client_host.bind(("203.0.113.5", 0))
            request = stun.binding_request(change_ip=change_ip, change_port=change_port)
            result = await transact(client, request)
            statistics = await observer.observer_statistics()

    assert result is not None
    response, source = result
    assert source == origin
    assert response.response_origin == origin
    assert response.other_address == ALTERNATE
    assert response.xor_mapped_address == response.mapped_address == client.local_address
    sent = {s.address: s.sent for s in statistics.sockets}
    assert sent[origin] == 1
    assert sum(sent.values()) == 1


@pytest.mark.parametrize(
    ("preset", "filtering"),
    [
        (Preset.FULL_CONE, "ei"),
        (Preset.RESTRICTED_CONE, "hd"),
        (Preset.PORT_RESTRICTED_CONE, "pd"),
    ],
)
async def test_filtering_shows_through_change_requests(
    preset: Preset, filtering: str, autojump_clock: trio.testing.MockClock
) -> None:
    """RFC 5780 filtering tests II and III, each on a fresh socket, against the observer."""
    async with open_internet(seed=23) as internet:
        host = observer_host(internet)
        site = add_site(internet.public, preset)
        async with open_observer(Observer(host, PRIMARY, ALTERNATE)):
            arrived = {}
            for name, change_ip in (("change-ip-and-port", True), ("change-port", False)):
                client = await site.host.bind()
                request = stun.binding_request(change_ip=change_ip, change_port=True)
                arrived[name] = await transact(client, request) is not None

    assert arrived == {
        "change-ip-and-port": filtering == "ei",
        "change-port": filtering in ("ei", "hd"),
    }


async def test_a_single_address_observer_serves_reflexive_addresses_and_refuses_changes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_internet(seed=24) as internet:
        host = internet.add_host([IP1])
        site = add_site(internet.public, Preset.PORT_RESTRICTED_CONE)
        async with open_observer(Observer(host, PRIMARY)) as observer:
            client = await site.host.bind()
            plain = await answered(client, stun.binding_request())
            change = await answered(client, stun.binding_request(change_ip=True))
            statistics = await observer.observer_statistics()
            addresses = await observer.addresses()

    assert addresses == ObserverAddresses(PRIMARY)
    assert plain.xor_mapped_address is not None
    assert plain.xor_mapped_address[0] == site.nats[0].public_addresses[0]
    assert plain.response_origin == PRIMARY
    assert plain.other_address is None
    assert change.error is not None and change.error.code == 420
    assert change.unknown_attributes == (AttributeType.CHANGE_REQUEST,)
    assert (statistics.answered, statistics.unknown_attribute_errors) == (1, 1)


async def test_response_port_aims_at_another_port_of_the_same_ip(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_internet(seed=25) as internet:
        host = observer_host(internet)
        client_host = internet.add_host(["203.0.113.5"])
        async with open_observer(Observer(host, PRIMARY, ALTERNATE)):
            asking = await client_host.bind(("203.0.113.5", 0))
            listening = await client_host.bind(("203.0.113.5", 0))
            request = stun.binding_request(response_port=listening.local_address[1])
            await asking.send_to(request.encode(), PRIMARY)
            on_listening = await receive_all(listening, 1)
            on_asking = await receive_all(asking, 1)

    assert on_asking == []
    [(data, _)] = on_listening
    assert stun.decode(data).xor_mapped_address == asking.local_address


# -- what the observer refuses ------------------------------------------------------------------


async def test_each_source_gets_its_burst_then_its_rate(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def flood(endpoint: UdpEndpoint) -> None:
        for _ in range(100):
            await endpoint.send_to(stun.binding_request().encode(), PRIMARY)

    async with open_internet(seed=26) as internet:
        host = observer_host(internet)
        flooder_host = internet.add_host(["203.0.113.5"])
        other_host = internet.add_host(["203.0.113.6"])
        async with open_observer(Observer(host, PRIMARY, rate=10.0, burst=20.0)) as observer:
            flooder = await flooder_host.bind(("203.0.113.5", 0))
            other = await other_host.bind(("203.0.113.6", 0))
            await flood(flooder)
            await trio.sleep(1.5)
            await flood(flooder)
            in_the_first_seconds = len(await receive_all(flooder, 200))
            while_flooded = await transact(other, stun.binding_request())
            await trio.sleep(3600)
            await flood(flooder)
            after_an_hour = len(await receive_all(flooder, 100))
            statistics = await observer.observer_statistics()

    assert in_the_first_seconds == 20 + 15  # the burst, then 10 a second
    assert while_flooded is not None  # another source is not affected
    assert after_an_hour == 20  # never more than the burst saved up
    assert statistics.rate_limited == 300 - 35 - 20
    assert statistics.answered == statistics.responses == 35 + 20 + 1
    assert statistics.sources == 2


async def test_ipv6_sources_share_one_budget_per_64(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_internet(seed=27) as internet:
        observer_address = ("2001:db8::10", P1)
        host = internet.add_host([observer_address[0]])
        client_host = internet.add_host(["2001:db8:1::1", "2001:db8:1::2", "2001:db8:2::1"])
        observer = Observer(host, observer_address, rate=1.0, burst=2.0)
        async with open_observer(observer) as ref:
            results = []
            # Two tokens for 2001:db8:1::/64: the second address of that /64 gets only one.
            for ip in ("2001:db8:1::1", "2001:db8:1::2", "2001:db8:1::2", "2001:db8:2::1"):
                client = await client_host.bind((ip, 0))
                results.append(await transact(client, stun.binding_request(), observer_address))
            statistics = await ref.observer_statistics()

    assert [r is not None for r in results] == [True, True, False, True]
    assert statistics.sources == 2


async def test_malformed_datagrams_and_non_requests_are_dropped_and_counted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    request = stun.binding_request().encode()
    datagrams = [
        b"",
        b"GET / HTTP/1.1\r\n",
        request[:-4] + bytes(4),  # FINGERPRINT broken
        bytes([0x40]) + request[1:],  # first byte outside STUN's range
        Message(message_class=MessageClass.INDICATION, transaction_id=bytes(12)).encode(),
        stun.binding_success(stun.decode(request), ("203.0.113.5", 1)).encode(),
    ]
    async with open_internet(seed=28) as internet:
        host = observer_host(internet)
        client_host = internet.add_host(["203.0.113.5"])
        async with open_observer(Observer(host, PRIMARY, ALTERNATE)) as observer:
            client = await client_host.bind(("203.0.113.5", 0))
            for data in datagrams:
                await client.send_to(data, PRIMARY)
            received = await receive_all(client, len(datagrams))
            still_serving = await transact(client, request)
            statistics = await observer.observer_statistics()

    assert received == []
    assert still_serving is not None
    assert (statistics.malformed, statistics.not_requests) == (4, 2)
    assert statistics.datagrams == len(datagrams) + 1
    assert (statistics.requests, statistics.responses) == (1, 1)


async def test_unknown_attributes_and_other_methods_get_errors(
    autojump_clock: trio.testing.MockClock,
) -> None:
    unknown = Message(
        message_class=MessageClass.REQUEST,
        transaction_id=stun.new_transaction_id(),
        raw_attributes=[RawAttribute(0x7F01, b"?")],
    )
    allocate = Message(
        message_class=MessageClass.REQUEST, transaction_id=stun.new_transaction_id(), method=0x003
    )
    async with open_internet(seed=29) as internet:
        host = observer_host(internet)
        client_host = internet.add_host(["203.0.113.5"])
        async with open_observer(Observer(host, PRIMARY, ALTERNATE)) as observer:
            client = await client_host.bind(("203.0.113.5", 0))
            refused_attribute = await answered(client, unknown)
            refused_method = await answered(client, allocate)
            statistics = await observer.observer_statistics()

    assert refused_attribute.error is not None and refused_attribute.error.code == 420
    assert refused_attribute.unknown_attributes == (0x7F01,)
    assert refused_method.error is not None and refused_method.error.code == 400
    assert (statistics.unknown_attribute_errors, statistics.bad_requests) == (1, 1)


async def test_no_response_takes_more_than_three_times_its_request_on_the_wire(
    autojump_clock: trio.testing.MockClock,
) -> None:
    requests = [
        stun.binding_request(fingerprint=False),
        stun.binding_request(),
        stun.binding_request(change_ip=True, change_port=True, fingerprint=False),
        stun.binding_request(padding=bytes(4)),
        stun.binding_request(padding=bytes(1400)),
        stun.binding_request(response_port=1, padding=bytes(4)),
        Message(message_class=MessageClass.REQUEST, transaction_id=bytes(12), method=0x00A),
    ]
    async with open_internet(seed=30) as internet:
        host = observer_host(internet)
        client_host = internet.add_host(["203.0.113.5"])
        verbose = Observer(host, PRIMARY, ALTERNATE, software="a long SOFTWARE value " * 8)
        async with open_observer(verbose) as observer:
            client = await client_host.bind(("203.0.113.5", 0))
            sizes = []
            for request in requests:
                data = request.encode()
                await client.send_to(data, PRIMARY)
                [(response, _)] = await receive_all(client, 1)
                sizes.append((len(data), len(response)))
            statistics = await observer.observer_statistics()

    ip = "203.0.113.5"
    assert all(wire_size(out, ip) <= 3 * wire_size(into, ip) for into, out in sizes)
    assert statistics.trimmed >= 1  # the long SOFTWARE had to give way somewhere
    assert statistics.amplification_refused == 0


async def test_an_observer_without_headroom_refuses_rather_than_amplifies(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_internet(seed=31) as internet:
        host = observer_host(internet)
        client_host = internet.add_host(["203.0.113.5"])
        async with open_observer(Observer(host, PRIMARY, max_amplification=1.0)) as observer:
            client = await client_host.bind(("203.0.113.5", 0))
            result = await transact(client, stun.binding_request(fingerprint=False))
            statistics = await observer.observer_statistics()

    assert result is None
    assert (statistics.requests, statistics.amplification_refused) == (1, 1)


async def test_the_source_table_stays_bounded_and_new_sources_are_still_answered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_internet(seed=32) as internet:
        host = observer_host(internet)
        clients = [internet.add_host(1) for _ in range(10)]
        async with open_observer(Observer(host, PRIMARY, max_sources=4)) as observer:
            results = []
            for client_host in clients:
                client = await client_host.bind((client_host.addresses[0], 0))
                results.append(await transact(client, stun.binding_request()))
            statistics = await observer.observer_statistics()

    assert all(result is not None for result in results)
    assert (statistics.sources, statistics.source_evictions) == (4, 6)


# -- lifecycle ----------------------------------------------------------------------------------


async def test_ports_chosen_by_the_system_are_shared_by_both_ips(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_internet(seed=33) as internet:
        host = observer_host(internet)
        async with open_observer(Observer(host, (IP1, 0), (IP2, 0))) as observer:
            addresses = await observer.addresses()
            statistics = await observer.observer_statistics()

    (ip1, port1), (ip2, port2) = addresses.primary, addresses.sockets[-1]
    assert (ip1, ip2) == (IP1, IP2)
    assert port1 != port2
    assert [s.address for s in statistics.sockets] == list(addresses.sockets)
    assert addresses.sockets == ((IP1, port1), (IP1, port2), (IP2, port1), (IP2, port2))


async def test_stopping_releases_every_socket(autojump_clock: trio.testing.MockClock) -> None:
    async with open_internet(seed=34) as internet:
        host = observer_host(internet)
        async with open_observer(Observer(host, PRIMARY, ALTERNATE)) as observer:
            sockets = (await observer.addresses()).sockets
        rebound = [await host.bind(address) for address in sockets]

    assert [endpoint.local_address for endpoint in rebound] == list(sockets)


async def test_a_taken_address_fails_the_start_and_leaves_nothing_bound(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_internet(seed=35) as internet:
        host = observer_host(internet)
        squatter = await host.bind(ALTERNATE)
        with pytest.raises(StartFailed):
            async with open_observer(Observer(host, PRIMARY, ALTERNATE)):
                pass  # pragma: no cover
        squatter.close()
        rebound = [await host.bind(a) for a in ObserverAddresses(PRIMARY, ALTERNATE).sockets]

    assert len(rebound) == 4


@pytest.mark.parametrize(
    ("listen", "alternate"),
    [
        (PRIMARY, (IP1, P2)),
        (PRIMARY, (IP2, P1)),
        (("0.0.0.0", P1), ALTERNATE),
        (PRIMARY, ("2001:db8::1", P2)),
    ],
    ids=["same-ip", "same-port", "wildcard", "two-families"],
)
def test_impossible_configurations_are_refused_at_once(listen: Address, alternate: Address) -> None:
    with pytest.raises(ValueError):
        Observer(RealUdpStack(["127.0.0.1"]), listen, alternate)


async def test_statistics_are_a_documented_call_message(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_internet(seed=36) as internet:
        host = observer_host(internet)
        async with open_actor(Observer(host, PRIMARY)) as ref:
            statistics = await ref.call(GetObserverStatistics())

    assert isinstance(statistics, ObserverStatistics)
    assert statistics.datagrams == 0


# -- real sockets -------------------------------------------------------------------------------

LOOPBACK = ("127.0.0.1", "127.0.0.2")


async def real_observer_test(addresses: ObserverAddresses) -> list[tuple[Address, Message]]:
    stack = RealUdpStack(list(LOOPBACK))
    results = []
    async with await stack.bind(("127.0.0.1", 0)) as client:
        for change_ip, change_port in ((False, False), (True, False), (False, True), (True, True)):
            request = stun.binding_request(change_ip=change_ip, change_port=change_port)
            await client.send_to(request.encode(), addresses.primary)
            with trio.fail_after(5):
                data, source = await client.receive_from()
            response = stun.decode(data)
            assert response.transaction_id == request.transaction_id
            assert response.xor_mapped_address == client.local_address
            assert response.other_address == addresses.alternate
            results.append((source, response))
    return results


async def test_real_sockets_on_loopback_serve_all_four_origins() -> None:
    stack = RealUdpStack(list(LOOPBACK))
    async with open_observer(Observer(stack, (LOOPBACK[0], 0), (LOOPBACK[1], 0))) as observer:
        addresses = await observer.addresses()
        results = await real_observer_test(addresses)

    (ip1, port1), (ip2, port2) = addresses.primary, addresses.sockets[-1]
    expected = [(ip1, port1), (ip2, port1), (ip1, port2), (ip2, port2)]
    assert [source for source, _ in results] == expected
    assert [response.response_origin for _, response in results] == expected


@pytest.mark.skipif(
    shutil.which("turnutils_natdiscovery") is None, reason="coturn's natdiscovery not installed"
)
async def test_coturn_natdiscovery_classifies_loopback_against_our_observer() -> None:
    stack = RealUdpStack(list(LOOPBACK))
    async with open_observer(Observer(stack, (LOOPBACK[0], 0), (LOOPBACK[1], 0))) as observer:
        port = (await observer.addresses()).primary[1]
        argv = ["turnutils_natdiscovery", "-m", "-f", "-p", str(port), LOOPBACK[0]]
        with trio.fail_after(15):
            result = await trio.run_process(argv, capture_stdout=True, stderr=subprocess.STDOUT)
        statistics = await observer.observer_statistics()

    output = result.stdout.decode()
    assert "NAT with Endpoint Independent Mapping!" in output
    assert "NAT with Endpoint Independent Filtering!" in output
    assert "No ALG: Mapped == XOR-Mapped" in output
    assert statistics.answered == statistics.requests >= 4


@pytest.mark.skipif(
    shutil.which("stun") is None,
    reason="Debian's stun-client (an RFC 3489 client) is not installed: `make test` installs it",
)
async def test_a_legacy_rfc_3489_client_classifies_loopback_against_our_observer() -> None:
    stack = RealUdpStack(list(LOOPBACK))
    async with open_observer(Observer(stack, (LOOPBACK[0], 0), (LOOPBACK[1], 0))) as observer:
        port = (await observer.addresses()).primary[1]
        with trio.fail_after(15):
            result = await trio.run_process(
                ["stun", f"{LOOPBACK[0]}:{port}"],
                capture_stdout=True,
                stderr=subprocess.STDOUT,
                check=False,  # its exit status is the NAT type it found
            )
        statistics = await observer.observer_statistics()

    output = result.stdout.decode()
    assert "Primary: Open" in output, output  # every test answered, no NAT on loopback
    assert statistics.answered >= 4


# -- the command --------------------------------------------------------------------------------


async def test_observe_main_serves_until_cancelled() -> None:
    async with trio.open_nursery() as nursery:
        addresses = await nursery.start(observe_main, ("127.0.0.1", 0), ("127.0.0.2", 0))
        results = await real_observer_test(addresses)
        nursery.cancel_scope.cancel()

    assert [source for source, _ in results][-1] == addresses.sockets[-1]
    stack = RealUdpStack(list(LOOPBACK))
    for address in addresses.sockets:  # released on cancellation
        async with await stack.bind(address):
            pass


def test_the_observe_subcommand_parses_addresses() -> None:
    parser = argparse.ArgumentParser(prog="macula-nat")
    add_observe_parser(parser.add_subparsers())

    args = parser.parse_args(["observe", "--listen", "[2001:db8::1]:3478", "--alt", "[::2]:3479"])
    plain = parser.parse_args(["observe", "--listen", "203.0.113.1:3478"])

    assert (args.listen, args.alternate) == (("2001:db8::1", 3478), ("::2", 3479))
    assert (plain.listen, plain.alternate) == (("203.0.113.1", 3478), None)
    assert callable(plain.handler)


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["--listen", "127.0.0.1:0", "--alt", "127.0.0.1:0"], "needs an IP other than"),
        (["--listen", "192.0.2.1:0"], "failed to start"),  # not an address of this machine
    ],
)
def test_the_command_explains_why_it_cannot_start(
    argv: list[str], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    parser = argparse.ArgumentParser(prog="macula-nat")
    add_observe_parser(parser.add_subparsers())
    args = parser.parse_args(["observe", *argv])

    assert args.handler(args) == 1
    assert reason in caplog.text


@pytest.mark.parametrize(
    "text", ["203.0.113.1", "203.0.113.1:port", "::1:3478", "x:1", "1.2.3.4:70000"]
)
def test_bad_addresses_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_address(text)
