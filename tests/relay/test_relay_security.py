"""Never an open relay: spoofed, forged, replayed and unauthorised traffic goes nowhere."""

from __future__ import annotations

import os

import trio
import trio.testing

from macula_nat.identity import NodeKey
from macula_nat.relay import frames
from macula_nat.relay.handshake import ClientHandshake
from macula_nat.relay.link import Link

from .support import PATIENCE, RELAY_LISTEN, connect, exchange, open_mesh

ATTACKER_IP = "203.0.113.66"


async def test_forged_frames_that_know_every_id_are_dropped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_mesh() as mesh:
        a, b = await mesh.node(), await mesh.node()
        mine, theirs = await connect(a, b)
        attacker = await mesh.internet.add_host([ATTACKER_IP]).bind()
        # What an on-path observer learns: registration ids, the session id, counters.
        registration = mesh.relay._core.registration(a.node_id)
        assert registration is not None
        forger = Link(registration.link.registration, os.urandom(32), os.urandom(32))
        for _ in range(1000):
            forger.seal_data(mine.id, b"")  # counters far ahead of the real ones
        forgeries = [
            forger.seal_data(mine.id, b"injected"),
            forger.seal(frames.Close(mine.id, frames.Reason.NORMAL)),
            forger.seal(frames.Close(0, frames.Reason.NORMAL)),
            forger.seal(frames.RelayRequest(1, b.node_id)),
            b"\x09" + bytes(range(100)),  # DATA of registration 0x00010203, which is nobody's
            b"\x0a" + os.urandom(60),
        ]
        for forgery in forgeries:
            await attacker.send_to(forgery, RELAY_LISTEN)
        await trio.sleep(1.0)
        after = await exchange(mine, theirs, b"genuine")
        statistics = mesh.relay.statistics()

    assert after == b"genuine"  # nothing injected arrived first, and the session lives
    assert statistics.relayed == 1
    assert statistics.sessions == 1 and statistics.registrations == 2
    assert statistics.drops.unauthenticated == len(forgeries)


async def test_nobody_registers_as_a_node_without_its_key(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_mesh() as mesh:
        victim = await mesh.node()
        attacker = await mesh.internet.add_host([ATTACKER_IP]).bind()
        handshake = ClientHandshake(NodeKey.generate(), mesh.relay.node_id)
        hello = frames.Hello(handshake.client_nonce, victim.node_id)
        await attacker.send_to(frames.encode(hello), RELAY_LISTEN)
        with trio.fail_after(PATIENCE):
            data, _ = await attacker.receive_from()
        challenge = frames.decode(data)
        assert isinstance(challenge, frames.Challenge)
        signed = handshake.on_challenge(challenge)
        assert signed is not None
        claimed = frames.Register(
            signed.client_nonce, victim.node_id, signed.cookie, signed.ephemeral,
            signed.observed, signed.signature,
        )  # fmt: skip
        await attacker.send_to(frames.encode(claimed), RELAY_LISTEN)
        with trio.move_on_after(5.0):
            await attacker.receive_from()
            raise AssertionError("the relay answered a forged REGISTER")
        registration = mesh.relay._core.registration(victim.node_id)
        statistics = mesh.relay.statistics()

    assert registration is not None and registration.address[0] != ATTACKER_IP
    assert statistics.drops.unauthenticated == 1


async def test_a_registered_node_cannot_use_a_session_it_is_not_part_of(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_mesh() as mesh:
        a, b, mallory = await mesh.node(), await mesh.node(), await mesh.node()
        mine, theirs = await connect(a, b)
        assert await mallory._send_data(mine.id, b"hijack")
        await trio.sleep(1.0)
        after = await exchange(mine, theirs, b"genuine")
        statistics = mesh.relay.statistics()

    assert after == b"genuine"
    assert statistics.drops.unknown_session == 1
    assert statistics.relayed == 1


async def test_a_flood_of_hellos_is_rate_limited_and_never_amplified(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_mesh() as mesh:
        attacker = await mesh.internet.add_host([ATTACKER_IP]).bind()
        hello = frames.encode(ClientHandshake(NodeKey.generate()).hello())
        for _ in range(200):
            await attacker.send_to(hello, RELAY_LISTEN)
        answers: list[bytes] = []
        with trio.move_on_after(5.0):
            for _ in range(200):
                answers.append((await attacker.receive_from())[0])
        statistics = mesh.relay.statistics()

    assert 0 < len(answers) <= mesh.relay.config.handshake_burst
    assert sum(map(len, answers)) <= len(answers) * len(hello)
    assert statistics.drops.rate_limited == 200 - len(answers)
