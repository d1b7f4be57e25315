"""Registration, sans-IO: proof of key possession, stateless cookies, and a shared link."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from macula_nat.identity import NodeKey
from macula_nat.relay import frames
from macula_nat.relay.handshake import (
    REGISTER_PURPOSE,
    REGISTERED_PURPOSE,
    ClientHandshake,
    CookieJar,
    CookieVerdict,
    accept_registration,
    register_transcript,
    registered_transcript,
)
from macula_nat.relay.link import Verdict

RELAY = NodeKey.from_seed(bytes([7]) * 32)
NODE = NodeKey.from_seed(bytes([9]) * 32)
MALLORY = NodeKey.from_seed(bytes([13]) * 32)
SOURCE = ("203.0.113.9", 50000)


def challenge_for(handshake: ClientHandshake, jar: CookieJar, now: float = 0.0) -> frames.Challenge:
    hello = handshake.hello()
    return frames.Challenge(
        hello.client_nonce, RELAY.node_id, jar.issue(hello.node_id, SOURCE, now), SOURCE
    )


def test_both_sides_end_with_the_same_link() -> None:
    handshake = ClientHandshake(NODE, RELAY.node_id)
    register = handshake.on_challenge(challenge_for(handshake, CookieJar()))
    assert register is not None
    accepted = accept_registration(RELAY, register, 42, 3600)
    assert accepted is not None
    registered, relay_link = accepted
    node_link = handshake.on_registered(registered)
    assert node_link is not None

    assert relay_link.open(node_link.seal(frames.Keepalive(1))) == frames.Keepalive(1)
    assert node_link.open(relay_link.seal(frames.Close(0, frames.Reason.NORMAL))) == frames.Close(
        0, frames.Reason.NORMAL
    )
    assert registered.registration == 42 and registered.ttl == 3600


def test_cookies_bind_node_address_and_time() -> None:
    jar = CookieJar(lifetime=30.0)
    cookie = jar.issue(NODE.node_id, SOURCE, 100.0)

    assert jar.check(cookie, NODE.node_id, SOURCE, 129.0) is CookieVerdict.VALID
    assert jar.check(cookie, NODE.node_id, SOURCE, 131.0) is CookieVerdict.STALE
    assert jar.check(cookie, MALLORY.node_id, SOURCE, 100.0) is CookieVerdict.FORGED
    assert jar.check(cookie, NODE.node_id, ("203.0.113.9", 50001), 100.0) is CookieVerdict.FORGED
    assert CookieJar().check(cookie, NODE.node_id, SOURCE, 100.0) is CookieVerdict.FORGED
    assert jar.check(bytes(24), NODE.node_id, SOURCE, 100.0) is CookieVerdict.FORGED


@pytest.mark.parametrize("field", ["node_id", "cookie", "ephemeral", "observed", "client_nonce"])
def test_a_register_changed_after_signing_is_refused(field: str) -> None:
    handshake = ClientHandshake(NODE, RELAY.node_id)
    register = handshake.on_challenge(challenge_for(handshake, CookieJar()))
    assert register is not None
    changed = {
        "node_id": attrs.evolve(register, node_id=MALLORY.node_id),
        "cookie": attrs.evolve(register, cookie=bytes(24)),
        "ephemeral": attrs.evolve(register, ephemeral=bytes(range(32))),
        "observed": attrs.evolve(register, observed=("198.51.100.66", 1234)),
        "client_nonce": attrs.evolve(register, client_nonce=bytes(16)),
    }[field]

    assert accept_registration(RELAY, changed, 1, 60) is None


def test_a_register_signed_for_another_relay_is_refused() -> None:
    handshake = ClientHandshake(NODE, MALLORY.node_id)  # meant for Mallory's relay
    challenge = attrs.evolve(challenge_for(handshake, CookieJar()), relay_id=MALLORY.node_id)
    register = handshake.on_challenge(challenge)
    assert register is not None

    assert accept_registration(RELAY, register, 1, 60) is None


def test_impersonating_a_node_without_its_key_fails() -> None:
    handshake = ClientHandshake(MALLORY, RELAY.node_id)
    register = handshake.on_challenge(challenge_for(handshake, CookieJar()))
    assert register is not None
    claimed = attrs.evolve(register, node_id=NODE.node_id)  # Mallory's signature, NODE's id

    assert accept_registration(RELAY, claimed, 1, 60) is None


def test_the_node_accepts_only_its_relay_s_signed_answer_to_its_own_attempt() -> None:
    handshake = ClientHandshake(NODE, RELAY.node_id)
    register = handshake.on_challenge(challenge_for(handshake, CookieJar()))
    assert register is not None
    genuine = accept_registration(RELAY, register, 1, 60)
    assert genuine is not None
    transcript = registered_transcript(RELAY.node_id, register, genuine[0])
    impostor = attrs.evolve(
        genuine[0], signature=MALLORY.sign_for(REGISTERED_PURPOSE, transcript)
    )  # what a man in the middle could sign

    assert handshake.on_registered(impostor) is None
    assert handshake.on_registered(attrs.evolve(genuine[0], ttl=7)) is None
    assert handshake.on_registered(attrs.evolve(genuine[0], client_nonce=bytes(16))) is None
    assert handshake.on_registered(genuine[0]) is not None


def test_frames_of_other_attempts_are_ignored() -> None:
    handshake = ClientHandshake(NODE, RELAY.node_id)
    challenge = challenge_for(handshake, CookieJar())
    refused = frames.Refused(bytes(16), frames.Reason.RELAY_DISABLED)

    assert handshake.on_challenge(attrs.evolve(challenge, client_nonce=bytes(16))) is None
    assert handshake.on_challenge(attrs.evolve(challenge, relay_id=MALLORY.node_id)) is None
    assert handshake.on_refused(refused) is None
    assert handshake.on_refused(attrs.evolve(refused, client_nonce=handshake.client_nonce)) is (
        frames.Reason.RELAY_DISABLED
    )
    fresh = ClientHandshake(NODE, RELAY.node_id)
    assert (
        fresh.on_registered(frames.Registered(bytes(16), 1, bytes(32), 1, SOURCE, bytes(64)))
        is None
    )


def test_without_a_relay_id_the_node_trusts_the_first_challenge() -> None:
    handshake = ClientHandshake(NODE)
    register = handshake.on_challenge(challenge_for(handshake, CookieJar()))
    assert register is not None and handshake.relay_id == RELAY.node_id
    accepted = accept_registration(RELAY, register, 5, 60)
    assert accepted is not None

    assert handshake.on_registered(accepted[0]) is not None


@given(st.binary(min_size=32, max_size=32))
def test_any_node_ephemeral_key_is_handled(ephemeral: bytes) -> None:
    handshake = ClientHandshake(NODE, RELAY.node_id)
    register = handshake.on_challenge(challenge_for(handshake, CookieJar()))
    assert register is not None
    resigned = attrs.evolve(register, ephemeral=ephemeral)
    resigned = attrs.evolve(
        resigned,
        signature=NODE.sign_for(REGISTER_PURPOSE, register_transcript(RELAY.node_id, resigned)),
    )
    accepted = accept_registration(RELAY, resigned, 1, 60)  # never raises, even for low order
    if accepted is not None:
        assert accepted[1].authenticate(b"\x09" + bytes(40)) is Verdict.FORGED
