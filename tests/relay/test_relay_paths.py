"""Relayed datagram paths on the simulated internet, between nodes behind every NAT preset."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from macula_nat.net.address import Address
from macula_nat.net.sim import UDP_PRESETS, LinkProfile, Preset
from macula_nat.relay import ClientConfig, RelayClient, RelayConfig, is_relay_frame
from macula_nat.wire import stun

from .support import PATIENCE, RELAY_LISTEN, connect, exchange, open_mesh


@pytest.mark.parametrize("initiator", UDP_PRESETS)
async def test_datagrams_pass_both_ways_from_behind_any_nat_to_behind_any_nat(
    initiator: Preset, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_mesh(max_sessions=20) as mesh:
        node = await mesh.node(initiator)
        failures = []
        for target_preset in UDP_PRESETS:
            target = await mesh.node(target_preset)
            mine, theirs = await connect(node, target)
            out = [f"{initiator}->{target_preset} {i}".encode() for i in range(3)]
            back = [f"{target_preset}->{initiator} {i}".encode() for i in range(3)]
            if [await exchange(mine, theirs, payload) for payload in out] != out:
                failures.append((initiator, target_preset, "out"))
            if [await exchange(theirs, mine, payload) for payload in back] != back:
                failures.append((target_preset, initiator, "back"))
        statistics = mesh.relay.statistics()

    assert failures == []
    assert statistics.sessions_opened == len(UDP_PRESETS)
    assert statistics.relayed == 6 * len(UDP_PRESETS)
    assert statistics.drops.total == 0


async def test_two_symmetric_nats_relay_a_stream_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_mesh() as mesh:
        a = await mesh.node(Preset.SYMMETRIC_RANDOM)
        b = await mesh.node(Preset.SYMMETRIC_SEQUENTIAL)
        mine, theirs = await connect(a, b)
        payloads = [i.to_bytes(4, "big") * 100 for i in range(100)]  # within the burst
        for payload in payloads:
            await mine.send(payload)
        with trio.fail_after(PATIENCE):
            received = [await theirs.receive() for _ in payloads]

    assert received == payloads


@pytest.mark.parametrize("seed", [7, 8])
async def test_registration_and_session_setup_survive_a_lossy_path(
    seed: int, autojump_clock: trio.testing.MockClock
) -> None:
    lossy = LinkProfile(latency=0.03, jitter=0.01, loss=0.25)
    patient = ClientConfig(request_timeout=20.0)  # 20 tries: all failing is about 1e-7
    async with open_mesh(RelayConfig(notice_attempts=20), seed=seed) as mesh:
        a = await mesh.node(Preset.SYMMETRIC_RANDOM, link=lossy, config=patient)
        b = await mesh.node(Preset.PORT_RESTRICTED_CONE, link=lossy, config=patient)
        mine, theirs = await connect(a, b)  # requests and notices are sent again until answered
        for i in range(200):
            await mine.send(i.to_bytes(2, "big"))
        received: list[bytes] = []
        with trio.move_on_after(5.0):
            async for payload in theirs:
                received.append(payload)
        statistics = a.statistics()

    assert 0.4 * 200 <= len(received) < 200  # about 0.75 * 0.75 of them cross both lossy links
    assert len(set(received)) == len(received)  # and none twice
    assert statistics.registrations == 1


async def test_keepalives_hold_the_nat_mappings_open_while_a_session_idles(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # NAT mappings last 30 s in the presets; the session stays quiet for 5 minutes.
    async with open_mesh(idle_timeout=3600.0) as mesh:
        a = await mesh.node(Preset.SYMMETRIC_RANDOM)
        b = await mesh.node(Preset.PORT_RESTRICTED_CONE)
        mine, theirs = await connect(a, b)
        await trio.sleep(300.0)
        after_quiet = await exchange(theirs, mine, b"still there?")
        keepalives = a.statistics().keepalives

    assert after_quiet == b"still there?"
    assert keepalives >= 300 / ClientConfig().keepalive_interval
    assert ClientConfig().keepalive_interval < 30.0


async def test_one_node_socket_carries_stun_and_relay_frames_to_one_relay_socket(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stun_in, stun_out = trio.open_memory_channel[tuple[bytes, Address]](8)

    async def demultiplex(client: RelayClient) -> None:
        """The node's one socket reader: STUN here, relay frames to the client (RFC 7983)."""
        while True:
            data, source = await client.endpoint.receive_from()
            if is_relay_frame(data):
                await client.datagram_received(data, source)
            elif stun.is_stun(data):
                stun_in.send_nowait((data, source))

    async with open_mesh() as mesh:
        a = await mesh.node(Preset.SYMMETRIC_RANDOM, receive=False, register=False)
        b = await mesh.node(Preset.FULL_CONE)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(demultiplex, a)
            registration = await a.wait_registered()
            await a.endpoint.send_to(stun.binding_request().encode(), RELAY_LISTEN)
            with trio.fail_after(PATIENCE):
                data, source = await stun_out.receive()
            mine, theirs = await connect(a, b)
            relayed = [await exchange(mine, theirs, b"out"), await exchange(theirs, mine, b"back")]
            nursery.cancel_scope.cancel()

    assert source == RELAY_LISTEN
    assert stun.decode(data).xor_mapped_address == registration.observed
    assert relayed == [b"out", b"back"]
    assert mesh.relay.statistics().stun_answered == 1
