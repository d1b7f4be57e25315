"""The relay's rules, sans-IO: no sockets, no clock; every datagram in, every answer out."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from macula_nat.identity import NodeId, NodeKey
from macula_nat.nat.binding import ObserverAddresses
from macula_nat.net.address import Address
from macula_nat.relay import frames
from macula_nat.relay.core import RelayCore, SessionEnded, SessionOpened
from macula_nat.relay.frames import Reason
from macula_nat.relay.handshake import ClientHandshake
from macula_nat.relay.limits import ByteBucket, admit
from macula_nat.relay.link import Link, Verdict
from macula_nat.relay.settings import RelayConfig, RelaySettings
from macula_nat.wire import stun

RELAY_ADDRESS: Address = ("198.51.100.1", 7000)
A: Address = ("203.0.113.1", 40001)
B: Address = ("203.0.113.2", 40002)
C: Address = ("203.0.113.3", 40003)
MALLORY: Address = ("203.0.113.66", 6666)


class Node:
    """A node's side, driven by hand: its key, address and (once registered) link."""

    def __init__(self, address: Address) -> None:
        self.key = NodeKey.generate()
        self.address = address
        self.link: Link | None = None

    @property
    def id(self) -> NodeId:
        return self.key.node_id

    def sealed(self, frame: frames.SessionFrame) -> bytes:
        assert self.link is not None
        return self.link.seal(frame)

    def opened(self, data: bytes) -> frames.SessionFrame:
        assert self.link is not None
        frame = self.link.open(data)
        assert not isinstance(frame, Verdict), frame
        return frame


def new_core(config: RelayConfig | None = None, **settings: Any) -> RelayCore:
    core = RelayCore(NodeKey.generate(), config)
    core.addresses = ObserverAddresses(RELAY_ADDRESS)
    core.enable(RelaySettings(**settings))
    return core


def address_of(core: RelayCore, node: Node) -> Address | None:
    registration = core.registration(node.id)
    return None if registration is None else registration.address


def register(core: RelayCore, node: Node, now: float = 0.0) -> None:
    handshake = ClientHandshake(node.key, core.relay_id)
    [(challenge, to)] = core.receive(frames.encode(handshake.hello()), node.address, now)
    assert to == node.address
    decoded = frames.decode(challenge)
    assert isinstance(decoded, frames.Challenge)
    request = handshake.on_challenge(decoded)
    assert request is not None
    [(answer, _)] = core.receive(frames.encode(request), node.address, now)
    registered = frames.decode(answer)
    assert isinstance(registered, frames.Registered)
    node.link = handshake.on_registered(registered)
    assert node.link is not None


def open_session(core: RelayCore, a: Node, b: Node, request: int = 1, now: float = 0.0) -> int:
    sends = core.receive(a.sealed(frames.RelayRequest(request, b.id)), a.address, now)
    accepted = a.opened(sends[0][0])
    assert isinstance(accepted, frames.RelayAccepted), accepted
    notice = b.opened(sends[1][0])
    assert notice == frames.RelayAccepted(0, accepted.session, a.id)
    return accepted.session


def refusal(core: RelayCore, a: Node, target: NodeId, request: int = 9) -> Reason:
    [(answer, _)] = core.receive(a.sealed(frames.RelayRequest(request, target)), a.address, 0.0)
    refused = a.opened(answer)
    assert isinstance(refused, frames.RequestRefused), refused
    return refused.reason


@pytest.fixture
def trio_of_nodes() -> tuple[RelayCore, Node, Node, Node]:
    core = new_core(max_sessions=10, max_sessions_per_node=4)
    nodes = Node(A), Node(B), Node(C)
    for node in nodes:
        register(core, node)
    return core, *nodes


# -- forwarding ---------------------------------------------------------------------------------


def test_data_goes_to_the_other_member_resealed_and_untouched(
    trio_of_nodes: tuple[RelayCore, Node, Node, Node],
) -> None:
    core, a, b, _ = trio_of_nodes
    session = open_session(core, a, b)
    payload = os.urandom(100)

    [(out, to)] = core.receive(a.sealed(frames.Data(session, payload)), A, 1.0)
    [(back, to_a)] = core.receive(b.sealed(frames.Data(session, b"reply")), B, 1.0)

    assert to == B and b.opened(out) == frames.Data(session, payload)
    assert to_a == A and a.opened(back) == frames.Data(session, b"reply")
    statistics = core.statistics()
    assert (statistics.relayed, statistics.bytes_relayed) == (2, len(payload) + 5)
    [opened] = core.take_effects()
    assert isinstance(opened, SessionOpened) and opened.session.bytes_transferred == 105


def test_forged_spoofed_and_replayed_frames_are_dropped_and_counted(
    trio_of_nodes: tuple[RelayCore, Node, Node, Node],
) -> None:
    core, a, b, _ = trio_of_nodes
    session = open_session(core, a, b)
    genuine = a.sealed(frames.Data(session, b"once"))
    tampered = bytearray(a.sealed(frames.Data(session, b"unsent")))
    tampered[20] ^= 1
    assert a.link is not None
    forger = Link(a.link.registration, os.urandom(32), os.urandom(32))
    forged = [forger.seal_data(session, b"inject") for _ in range(10)][-1]  # a fresh counter

    assert len(core.receive(genuine, A, 1.0)) == 1
    assert core.receive(genuine, A, 1.0) == []  # replayed from the same address
    assert core.receive(genuine, MALLORY, 1.0) == []  # replayed from elsewhere
    assert core.receive(forged, MALLORY, 1.0) == []  # knows the ids, not the key
    assert core.receive(bytes(tampered), A, 1.0) == []
    assert core.receive(b"\x09" + os.urandom(40), MALLORY, 1.0) == []  # no such registration
    assert core.receive(b"\xff" * 60, MALLORY, 1.0) == []

    drops = core.statistics().drops
    assert (drops.replayed, drops.unauthenticated, drops.malformed) == (2, 3, 1)
    assert address_of(core, a) == A
    assert core.statistics().relayed == 1


def test_a_node_cannot_use_a_session_it_is_not_part_of(
    trio_of_nodes: tuple[RelayCore, Node, Node, Node],
) -> None:
    core, a, b, c = trio_of_nodes
    session = open_session(core, a, b)

    [(answer, to)] = core.receive(c.sealed(frames.Data(session, b"hijack")), C, 1.0)

    assert to == C and c.opened(answer) == frames.Close(session, Reason.UNKNOWN_SESSION)
    assert core.statistics().drops.unknown_session == 1
    assert core.statistics().relayed == 0


def test_a_registration_follows_its_node_to_a_new_address_once_it_answers_there(
    trio_of_nodes: tuple[RelayCore, Node, Node, Node],
) -> None:
    core, a, b, _ = trio_of_nodes
    session = open_session(core, a, b)
    older = a.sealed(frames.Data(session, b"1"))
    newer = a.sealed(frames.Data(session, b"2"))
    moved: Address = ("203.0.113.1", 40999)

    [(probe, to), (forwarded, to_b)] = core.receive(newer, moved, 1.0)
    core.receive(older, A, 1.0)  # reordered, authentic, but not the newest: no new trial
    challenge = a.opened(probe)
    assert isinstance(challenge, frames.PathChallenge) and to == moved
    assert to_b == B and b.opened(forwarded) == frames.Data(session, b"2")
    assert address_of(core, a) == A  # served where it was until the new address answers

    assert core.receive(a.sealed(frames.PathResponse(challenge.nonce)), moved, 1.5) == []

    assert address_of(core, a) == moved
    assert core.statistics().roams == 1


# -- sessions: admission and limits ---------------------------------------------------------------


def test_requests_are_refused_with_the_reason(
    trio_of_nodes: tuple[RelayCore, Node, Node, Node],
) -> None:
    core, a, b, c = trio_of_nodes

    assert refusal(core, a, a.id) is Reason.SELF_TARGET
    assert refusal(core, a, NodeKey.generate().node_id) is Reason.UNKNOWN_TARGET
    for request in range(1, 5):
        open_session(core, a, b, request)
    assert refusal(core, a, c.id) is Reason.PER_NODE_CAP  # a has 4 of 4
    assert refusal(core, c, b.id) is Reason.PER_NODE_CAP  # so has b
    assert core.statistics().refusals.per_node_cap == 2


def test_max_sessions_holds() -> None:
    core = new_core(max_sessions=3, max_sessions_per_node=10, session_source_share=1.0)
    a, b = Node(A), Node(B)
    register(core, a)
    register(core, b)
    for request in range(1, 4):
        open_session(core, a, b, request)

    assert refusal(core, b, a.id) is Reason.MAX_SESSIONS_REACHED
    assert core.statistics().sessions == 3


def test_a_retransmitted_request_gets_the_same_session(
    trio_of_nodes: tuple[RelayCore, Node, Node, Node],
) -> None:
    core, a, b, _ = trio_of_nodes
    session = open_session(core, a, b, request=5)

    [(again, _)] = core.receive(a.sealed(frames.RelayRequest(5, b.id)), A, 0.5)

    assert a.opened(again) == frames.RelayAccepted(5, session, b.id)
    assert core.statistics().sessions == 1


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"same_node": True}, Reason.SELF_TARGET),
        ({"target_registered": False}, Reason.UNKNOWN_TARGET),
        ({"sessions": 2}, Reason.MAX_SESSIONS_REACHED),
        ({"initiator_sessions": 1}, Reason.PER_NODE_CAP),
        ({"target_sessions": 1}, Reason.PER_NODE_CAP),
        ({}, None),
    ],
)
def test_admission_checks_each_limit(kwargs: dict[str, Any], reason: Reason | None) -> None:
    settings = RelaySettings(max_sessions=2, max_sessions_per_node=1)
    facts: dict[str, Any] = {
        "same_node": False,
        "target_registered": True,
        "sessions": 0,
        "initiator_sessions": 0,
        "target_sessions": 0,
        **kwargs,
    }

    assert admit(settings, **facts) is reason
    assert admit(None, **facts) is Reason.RELAY_DISABLED


@settings(max_examples=50)
@given(st.floats(1e3, 1e7), st.integers(100, 1400))
def test_a_byte_bucket_passes_its_rate_and_burst_and_no_more(rate: float, size: int) -> None:
    bucket = ByteBucket(rate, 65536.0, 0.0)
    step = size / (2 * rate)  # offered at twice the rate
    passed = sum(size for i in range(1, 2001) if bucket.take(size, i * step))
    elapsed = 2000 * step

    assert passed <= 65536 + rate * elapsed
    assert passed >= min(2000 * size, 65536 + rate * elapsed - 2 * size)


def test_over_bandwidth_data_is_dropped() -> None:
    core = new_core(bandwidth_limit=10_000.0, bandwidth_burst=2_000.0)
    a, b = Node(A), Node(B)
    register(core, a)
    register(core, b)
    session = open_session(core, a, b)

    sent = [core.receive(a.sealed(frames.Data(session, bytes(1000))), A, 1.0) for _ in range(3)]

    assert [len(s) for s in sent] == [1, 1, 0]
    assert core.statistics().drops.over_bandwidth == 1


# -- registrations --------------------------------------------------------------------------------


def test_registrations_expire_and_take_their_sessions_with_them() -> None:
    core = new_core(RelayConfig(liveness_timeout=60.0, registration_ttl=600.0))
    a, b = Node(A), Node(B)
    register(core, a)
    register(core, b)
    session = open_session(core, a, b)
    core.take_effects()
    core.receive(b.sealed(frames.Keepalive(1)), B, 50.0)

    sends = core.sweep(61.0)  # a has been silent for 61 s; b spoke at 50 s

    assert core.registration(a.id) is None and core.registration(b.id) is not None
    by_node = {to: (a if to == A else b).opened(data) for data, to in sends}
    assert by_node == {
        A: frames.Close(0, Reason.REGISTRATION_EXPIRED),
        B: frames.Close(session, Reason.PEER_GONE),
    }
    [ended] = core.take_effects()
    assert isinstance(ended, SessionEnded) and ended.reason is Reason.PEER_GONE
    assert core.sweep(110.0 - 1.0) == []  # b spoke at 50 s: alive until 110 s
    assert core.sweep(600.0) != []
    assert core.statistics().registrations == 0


def test_frames_of_an_expired_registration_are_dropped() -> None:
    core = new_core(RelayConfig(registration_ttl=100.0))
    a = Node(A)
    register(core, a)

    assert core.receive(a.sealed(frames.Keepalive(1)), A, 100.0) == []
    assert core.statistics().drops.expired == 1


def test_a_node_registering_again_keeps_its_sessions() -> None:
    core = new_core()
    a, b = Node(A), Node(B)
    register(core, a)
    register(core, b)
    session = open_session(core, a, b)
    old = a.link
    assert old is not None
    register(core, a, now=10.0)

    assert core.receive(old.seal_data(session, b"x"), A, 11.0) == []
    [(out, _)] = core.receive(a.sealed(frames.Data(session, b"y")), A, 11.0)
    assert b.opened(out) == frames.Data(session, b"y")


def test_a_node_leaving_ends_its_sessions() -> None:
    core = new_core()
    a, b = Node(A), Node(B)
    register(core, a)
    register(core, b)
    session = open_session(core, a, b)

    [(out, to)] = core.receive(a.sealed(frames.Close(0, Reason.NORMAL)), A, 1.0)

    assert to == B and b.opened(out) == frames.Close(session, Reason.PEER_GONE)
    assert core.registration(a.id) is None


def test_register_is_idempotent_and_replays_and_forgeries_are_refused() -> None:
    core = new_core(RelayConfig(challenge_lifetime=30.0))
    node = Node(A)
    handshake = ClientHandshake(node.key, core.relay_id)
    [(challenge, _)] = core.receive(frames.encode(handshake.hello()), A, 0.0)
    decoded = frames.decode(challenge)
    assert isinstance(decoded, frames.Challenge)
    request = handshake.on_challenge(decoded)
    assert request is not None
    wire = frames.encode(request)

    [(first, _)] = core.receive(wire, A, 1.0)
    [(again, _)] = core.receive(wire, A, 2.0)  # our answer was lost: the same answer again
    assert first == again
    assert core.receive(wire, MALLORY, 2.0) == []  # the cookie is bound to A's address
    register(core, node, now=5.0)  # a newer registration...
    assert core.receive(wire, A, 6.0) == []  # ...is not replaced by the old REGISTER
    assert core.statistics().drops.replayed == 1
    assert core.statistics().drops.unauthenticated == 1


def test_a_stale_challenge_is_refused_so_the_node_starts_over() -> None:
    core = new_core(RelayConfig(challenge_lifetime=30.0))
    handshake = ClientHandshake(NodeKey.generate(), core.relay_id)
    [(challenge, _)] = core.receive(frames.encode(handshake.hello()), A, 0.0)
    decoded = frames.decode(challenge)
    assert isinstance(decoded, frames.Challenge)
    request = handshake.on_challenge(decoded)
    assert request is not None

    [(answer, _)] = core.receive(frames.encode(request), A, 40.0)

    refused = frames.decode(answer)
    assert isinstance(refused, frames.Refused)
    assert handshake.on_refused(refused) is Reason.STALE_CHALLENGE


def test_nobody_registers_under_an_id_whose_key_they_lack() -> None:
    core = new_core()
    victim, mallory = Node(A), Node(MALLORY)
    register(core, victim)
    handshake = ClientHandshake(mallory.key, core.relay_id)
    hello = frames.Hello(handshake.client_nonce, victim.id)  # claims the victim's id
    [(challenge, _)] = core.receive(frames.encode(hello), MALLORY, 1.0)
    decoded = frames.decode(challenge)
    assert isinstance(decoded, frames.Challenge)
    request = handshake.on_challenge(decoded)
    assert request is not None
    claimed = frames.Register(
        request.client_nonce, victim.id, request.cookie, request.ephemeral,
        request.observed, request.signature,
    )  # fmt: skip

    assert core.receive(frames.encode(claimed), MALLORY, 1.0) == []
    assert address_of(core, victim) == A


def test_limits_on_registrations_and_a_disabled_relay_refuse_with_reasons() -> None:
    core = new_core(RelayConfig(max_registrations=1))
    register(core, Node(A))
    handshake = ClientHandshake(NodeKey.generate(), core.relay_id)
    [(challenge, _)] = core.receive(frames.encode(handshake.hello()), B, 0.0)
    decoded = frames.decode(challenge)
    assert isinstance(decoded, frames.Challenge)
    request = handshake.on_challenge(decoded)
    assert request is not None
    [(answer, _)] = core.receive(frames.encode(request), B, 0.0)
    refused = frames.decode(answer)
    assert isinstance(refused, frames.Refused) and refused.reason is Reason.MAX_REGISTRATIONS

    core.disable()
    [(answer, _)] = core.receive(frames.encode(ClientHandshake(NodeKey.generate()).hello()), C, 0)
    refused = frames.decode(answer)
    assert isinstance(refused, frames.Refused) and refused.reason is Reason.RELAY_DISABLED


def test_disable_ends_every_session_and_registration() -> None:
    core = new_core()
    a, b = Node(A), Node(B)
    register(core, a)
    register(core, b)
    session = open_session(core, a, b)
    core.take_effects()

    sends = core.disable()

    received = sorted((to, repr((a if to == A else b).opened(data))) for data, to in sends)
    assert received == sorted(
        [
            (A, repr(frames.Close(session, Reason.RELAY_DISABLED))),
            (B, repr(frames.Close(session, Reason.RELAY_DISABLED))),
            (A, repr(frames.Close(0, Reason.RELAY_DISABLED))),
            (B, repr(frames.Close(0, Reason.RELAY_DISABLED))),
        ]
    )
    [ended] = core.take_effects()
    assert isinstance(ended, SessionEnded) and ended.reason is Reason.RELAY_DISABLED
    assert not core.enabled and core.statistics().registrations == 0


# -- abuse ----------------------------------------------------------------------------------------


def test_a_flood_from_one_source_is_rate_limited() -> None:
    core = new_core(RelayConfig(handshake_rate=10.0, handshake_burst=20.0))
    hello = frames.encode(ClientHandshake(NodeKey.generate()).hello())

    answered = sum(bool(core.receive(hello, MALLORY, 0.0)) for _ in range(100))

    assert answered == 20
    assert core.statistics().drops.rate_limited == 80
    assert core.receive(hello, A, 0.0) != []  # other sources are not affected


def test_control_frames_are_rate_limited_per_registration() -> None:
    core = new_core(RelayConfig(control_rate=5.0, control_burst=5.0))
    a = Node(A)
    register(core, a)

    answered = sum(bool(core.receive(a.sealed(frames.Keepalive(i)), A, 0.0)) for i in range(20))

    assert answered == 5


def test_the_relay_answers_stun_binding_on_the_same_socket() -> None:
    core = new_core()
    request = stun.binding_request()

    [(data, to)] = core.receive(request.encode(), A, 0.0)

    assert to == A
    assert stun.decode(data).xor_mapped_address == A
    assert core.statistics().stun_answered == 1


def test_frames_only_a_relay_sends_are_dropped_as_malformed() -> None:
    core = new_core()
    a = Node(A)
    register(core, a)
    challenge = frames.Challenge(bytes(16), a.id, bytes(24), A)

    assert core.receive(frames.encode(challenge), A, 0.0) == []
    assert core.receive(a.sealed(frames.Pong(1, 0, A)), A, 0.0) == []
    assert core.receive(b"\x40quic", A, 0.0) == []
    assert core.statistics().drops.malformed == 3


@settings(max_examples=500)
@given(st.integers(4, 255), st.binary(max_size=200))
def test_no_datagram_draws_a_larger_answer_or_an_exception(first: int, rest: bytes) -> None:
    core = new_core()
    data = bytes((first,)) + rest

    for answer, to in core.receive(data, MALLORY, 0.0):
        assert to == MALLORY
        assert len(answer) <= len(data)
