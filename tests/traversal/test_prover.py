"""PathProver: an address is proven only by an authentic, fresh ACK from where our PROBE went."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from macula_nat.net.address import Address
from macula_nat.traversal.prover import PathProver, ProverStatistics, Received
from macula_nat.traversal.punch_wire import (
    FRAME_SIZE,
    KEY_SIZE,
    LINK_ID_SIZE,
    NONCE_SIZE,
    FrameKind,
    ProbeFrame,
    Role,
    decode_probe,
    encode_probe,
)
from macula_nat.traversal.replay import stamped_nonce

LINK = bytes(range(1, 1 + LINK_ID_SIZE))
KEY = bytes(range(KEY_SIZE))
OTHER_KEY = bytes(range(100, 100 + KEY_SIZE))
OTHER_LINK = bytes(range(50, 50 + LINK_ID_SIZE))
ADDR_A: Address = ("198.51.100.1", 40001)
ADDR_B: Address = ("203.0.113.2", 50002)
ELSEWHERE: Address = ("192.0.2.66", 6666)

addresses = st.tuples(st.ip_addresses().map(str), st.integers(min_value=0, max_value=65535))


def counter(start: int = 1) -> Callable[[int], bytes]:
    """A deterministic ``random_bytes``: the nonces' random parts are start, start + 1, ..."""
    count = itertools.count(start)
    return lambda size: next(count).to_bytes(size, "big")


def nonce(n: int, at: float = 0.0) -> bytes:
    """The ``n``-th nonce of a ``counter()`` prover, made at time ``at``."""
    return stamped_nonce(at, NONCE_SIZE, lambda size: n.to_bytes(size, "big"))


def frame(
    kind: FrameKind,
    role: Role,
    n: int,
    *,
    to: Address = ADDR_B,
    at: float = 0.0,
    link_id: bytes = LINK,
    key: bytes = KEY,
) -> bytes:
    """A frame of nonce ``n`` made at ``at``, challenging ``to`` (a PROBE's destination, which
    its ACK echoes)."""
    return encode_probe(ProbeFrame(kind, role, link_id, nonce(n, at), to), key)


def stats(
    sent: int, received: int, acks: int, rejected: int, replays: int = 0, looped: int = 0
) -> ProverStatistics:
    return ProverStatistics(sent, received, acks, rejected, replays, looped)


def pair() -> tuple[PathProver, PathProver]:
    """The initiator's and the responder's prover of one link, with predictable nonces."""
    a = PathProver(LINK, KEY, Role.INITIATOR, random_bytes=counter(1))
    b = PathProver(LINK, KEY, Role.RESPONDER, random_bytes=counter(1000))
    return a, b


# -- the happy path ------------------------------------------------------------------------------


def test_two_provers_prove_each_other() -> None:
    a, b = pair()

    probe = a.probe(ADDR_B, now=10.0)
    answered = b.receive(probe, ADDR_A, now=10.1)
    assert answered.reply is not None
    assert answered.probe_back is True
    assert answered.authentic is True
    assert answered.proven is None  # a PROBE alone proves nothing

    proved = a.receive(answered.reply, ADDR_B, now=10.25)
    assert proved.proven == ADDR_B
    assert proved.rtt == pytest.approx(0.25)
    assert proved.authentic is True
    assert a.proven == frozenset({ADDR_B})

    # B probes back and is proven by A's ACK.
    back = b.probe(ADDR_A, now=10.3)
    ack = a.receive(back, ADDR_B, now=10.3)
    assert ack.reply is not None
    assert ack.probe_back is False  # A already proved ADDR_B
    assert b.receive(ack.reply, ADDR_A, now=10.5).proven == ADDR_A
    assert b.proven == frozenset({ADDR_A})

    assert a.statistics() == stats(1, 1, 1, 0)
    assert b.statistics() == stats(1, 1, 1, 0)


def test_the_ack_echoes_the_probes_nonce_with_the_repliers_role() -> None:
    a, b = pair()
    probe = a.probe(ADDR_B, now=0.0)

    reply = b.receive(probe, ADDR_A, now=0.0).reply

    assert reply is not None
    sent = ProbeFrame(FrameKind.PROBE, Role.INITIATOR, LINK, nonce(1), ADDR_B)
    assert decode_probe(probe, KEY) == sent
    assert decode_probe(reply, KEY) == ProbeFrame(
        FrameKind.ACK, Role.RESPONDER, LINK, nonce(1), ADDR_B
    )


def test_a_deterministic_random_bytes_makes_the_probe_frames_exact() -> None:
    a, _ = pair()

    assert a.probe(ADDR_B, now=0.0) == frame(FrameKind.PROBE, Role.INITIATOR, 1)
    assert a.probe(ELSEWHERE, now=0.0) == frame(FrameKind.PROBE, Role.INITIATOR, 2, to=ELSEWHERE)
    assert len(frame(FrameKind.PROBE, Role.INITIATOR, 3)) == FRAME_SIZE


def test_a_hand_built_ack_to_our_nonce_proves_its_source() -> None:
    a, _ = pair()
    a.probe(ADDR_B, now=1.0)
    a.probe(ELSEWHERE, now=2.0)

    ack = frame(FrameKind.ACK, Role.RESPONDER, 2, to=ELSEWHERE, at=2.0)
    received = a.receive(ack, ELSEWHERE, now=5.0)

    assert received == Received(proven=ELSEWHERE, rtt=3.0, authentic=True)


def test_proven_grows_with_each_address_proven() -> None:
    a, _ = pair()
    targets: list[Address] = [ADDR_B, ELSEWHERE, ("2001:db8::7", 7)]
    for target in targets:
        a.probe(target, now=0.0)

    seen: list[frozenset[Address]] = []
    for n, target in enumerate(targets, start=1):
        ack = frame(FrameKind.ACK, Role.RESPONDER, n, to=target)
        assert a.receive(ack, target, now=1.0).proven == target
        seen.append(a.proven)

    assert seen == [frozenset(targets[:1]), frozenset(targets[:2]), frozenset(targets)]


def test_proven_is_a_snapshot_not_a_live_view() -> None:
    a, _ = pair()
    before = a.proven
    a.probe(ADDR_B, now=0.0)
    a.receive(frame(FrameKind.ACK, Role.RESPONDER, 1), ADDR_B, now=0.0)

    assert before == frozenset()
    assert a.proven == frozenset({ADDR_B})


# -- ACKs that prove nothing ---------------------------------------------------------------------


def test_an_ack_from_another_address_than_the_probe_went_to_proves_nothing() -> None:
    a, b = pair()
    probe = a.probe(ADDR_B, now=0.0)
    ack = b.receive(probe, ADDR_A, now=0.0).reply
    assert ack is not None

    received = a.receive(ack, ELSEWHERE, now=0.1)

    assert received == Received(authentic=True)
    assert a.proven == frozenset()
    assert a.statistics().rejected == 1
    assert a.statistics().acks_received == 0


def test_a_misdirected_ack_does_not_burn_the_nonce_for_the_real_path() -> None:
    a, b = pair()
    ack = b.receive(a.probe(ADDR_B, now=0.0), ADDR_A, now=0.0).reply
    assert ack is not None

    assert a.receive(ack, ELSEWHERE, now=0.1).proven is None
    assert a.receive(ack, ADDR_B, now=0.2).proven == ADDR_B


def test_an_ack_to_an_unknown_nonce_proves_nothing() -> None:
    a, _ = pair()
    a.probe(ADDR_B, now=0.0)  # nonce 1

    received = a.receive(frame(FrameKind.ACK, Role.RESPONDER, 99), ADDR_B, now=0.1)

    assert received == Received(authentic=True)
    assert a.proven == frozenset()
    assert a.statistics().rejected == 1


def test_a_replayed_ack_proves_only_once() -> None:
    a, b = pair()
    ack = b.receive(a.probe(ADDR_B, now=0.0), ADDR_A, now=0.0).reply
    assert ack is not None

    assert a.receive(ack, ADDR_B, now=0.1).proven == ADDR_B
    a.forget(ADDR_B)
    replayed = a.receive(ack, ADDR_B, now=0.2)

    assert replayed == Received(authentic=True)
    assert a.proven == frozenset()
    assert a.statistics() == stats(1, 0, 1, 1)


def test_an_ack_older_than_the_nonce_lifetime_proves_nothing() -> None:
    a = PathProver(LINK, KEY, Role.INITIATOR, nonce_lifetime=30.0, random_bytes=counter())
    a.probe(ADDR_B, now=100.0)

    received = a.receive(frame(FrameKind.ACK, Role.RESPONDER, 1, at=100.0), ADDR_B, now=130.5)

    assert received.proven is None
    assert received.authentic is True
    assert a.statistics().rejected == 1


def test_an_ack_within_the_nonce_lifetime_still_proves() -> None:
    a = PathProver(LINK, KEY, Role.INITIATOR, nonce_lifetime=30.0, random_bytes=counter())
    a.probe(ADDR_B, now=100.0)

    received = a.receive(frame(FrameKind.ACK, Role.RESPONDER, 1, at=100.0), ADDR_B, now=130.0)

    assert received.proven == ADDR_B
    assert received.rtt == 30.0


# -- frames rejected outright --------------------------------------------------------------------


def test_our_own_probe_reflected_back_is_rejected() -> None:
    a, _ = pair()
    probe = a.probe(ADDR_B, now=0.0)

    received = a.receive(probe, ADDR_B, now=0.1)

    assert received == Received()
    assert received.reply is None
    assert a.statistics() == stats(1, 0, 0, 1)


def test_an_ack_with_our_own_role_is_rejected_even_to_our_nonce() -> None:
    a, _ = pair()
    a.probe(ADDR_B, now=0.0)

    received = a.receive(frame(FrameKind.ACK, Role.INITIATOR, 1), ADDR_B, now=0.1)

    assert received == Received()
    assert a.proven == frozenset()


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(
            frame(FrameKind.PROBE, Role.RESPONDER, 1, key=OTHER_KEY), id="probe-wrong-key"
        ),
        pytest.param(frame(FrameKind.ACK, Role.RESPONDER, 1, key=OTHER_KEY), id="ack-wrong-key"),
        pytest.param(
            frame(FrameKind.PROBE, Role.RESPONDER, 1, link_id=OTHER_LINK), id="probe-other-link"
        ),
        pytest.param(
            frame(FrameKind.ACK, Role.RESPONDER, 1, link_id=OTHER_LINK), id="ack-other-link"
        ),
        pytest.param(b"", id="empty"),
        pytest.param(b"\x10" * FRAME_SIZE, id="garbage-probe-sized"),
        pytest.param(b"\x00\x01garbage", id="garbage-short"),
        pytest.param(frame(FrameKind.ACK, Role.RESPONDER, 1)[:-1], id="ack-truncated"),
    ],
)
def test_frames_without_the_links_key_and_id_are_rejected(data: bytes) -> None:
    a, _ = pair()
    a.probe(ADDR_B, now=0.0)  # nonce 1 is outstanding: only the frame's flaw can reject it

    received = a.receive(data, ADDR_B, now=0.1)

    assert received == Received()
    assert received.authentic is False
    assert a.proven == frozenset()
    assert a.statistics() == stats(1, 0, 0, 1)


# -- probe back and forget -----------------------------------------------------------------------


def test_a_probe_from_a_proven_address_needs_no_probe_back_until_forgotten() -> None:
    a, _ = pair()
    a.probe(ADDR_B, now=0.0)
    assert a.receive(frame(FrameKind.ACK, Role.RESPONDER, 1), ADDR_B, now=0.1).proven == ADDR_B

    def peer_probe(n: int) -> bytes:
        return frame(FrameKind.PROBE, Role.RESPONDER, n, to=ADDR_A, at=1.0)

    assert a.receive(peer_probe(77), ADDR_B, now=1.0).probe_back is False
    assert a.receive(peer_probe(78), ELSEWHERE, now=1.0).probe_back is True

    a.forget(ADDR_B)

    assert a.proven == frozenset()
    again = a.receive(peer_probe(79), ADDR_B, now=2.0)
    assert again.probe_back is True
    assert again.reply == frame(FrameKind.ACK, Role.INITIATOR, 79, to=ADDR_A, at=1.0)


def test_forgetting_an_unknown_address_is_harmless() -> None:
    a, _ = pair()
    a.forget(ELSEWHERE)

    assert a.proven == frozenset()


# -- bounds --------------------------------------------------------------------------------------


def test_only_the_newest_max_outstanding_nonces_can_be_acknowledged() -> None:
    a = PathProver(LINK, KEY, Role.INITIATOR, max_outstanding=4, random_bytes=counter())
    targets: list[Address] = [("192.0.2.1", 1000 + n) for n in range(1, 7)]
    for target in targets:
        a.probe(target, now=0.0)  # nonces 1..6

    results = [
        a.receive(frame(FrameKind.ACK, Role.RESPONDER, n, to=target), target, now=1.0).proven
        for n, target in enumerate(targets, start=1)
    ]

    assert results == [None, None, *targets[2:]]
    assert a.proven == frozenset(targets[2:])
    assert a.statistics() == stats(6, 0, 4, 2)


# -- whatever arrives ----------------------------------------------------------------------------


@given(data=st.binary(max_size=2 * FRAME_SIZE), source=addresses)
def test_arbitrary_bytes_from_anywhere_never_raise_and_never_prove(
    data: bytes, source: Address
) -> None:
    a = PathProver(LINK, KEY, Role.INITIATOR, random_bytes=counter())
    for _ in range(8):
        a.probe(source, now=0.0)  # these nonces wait for an ACK from this very source
        a.probe(ADDR_B, now=0.0)

    received = a.receive(data, source, now=1.0)

    assert received.proven is None
    assert received.rtt is None
    assert a.proven == frozenset()
    assert a.statistics().acks_received == 0


@given(
    n=st.integers(min_value=1, max_value=4),
    bit=st.integers(min_value=0, max_value=FRAME_SIZE * 8 - 1),
)
def test_an_ack_with_any_bit_flipped_proves_nothing(n: int, bit: int) -> None:
    a = PathProver(LINK, KEY, Role.INITIATOR, random_bytes=counter())
    for _ in range(4):
        a.probe(ADDR_B, now=0.0)
    ack = bytearray(frame(FrameKind.ACK, Role.RESPONDER, n))
    ack[bit // 8] ^= 1 << (bit % 8)

    received = a.receive(bytes(ack), ADDR_B, now=1.0)

    assert received.proven is None
    assert a.proven == frozenset()
    assert a.receive(frame(FrameKind.ACK, Role.RESPONDER, n), ADDR_B, now=1.0).proven == ADDR_B


# -- replays, forwarders and the challenged address (issue 11, point 8) --------------------------


def test_a_replayed_probe_gets_no_answer_and_no_probe_back() -> None:
    a, b = pair()
    probe = a.probe(ADDR_B, now=0.0)
    assert b.receive(probe, ADDR_A, now=0.0).reply is not None

    for source in (ADDR_A, ELSEWHERE):  # the same probe again, from anywhere
        assert b.receive(probe, source, now=0.5) == Received(authentic=True)

    assert b.statistics() == stats(0, 3, 0, 0, replays=2)


def test_a_probe_older_than_the_nonce_lifetime_by_its_senders_clock_gets_no_answer() -> None:
    _, b = pair()
    assert b.receive(frame(FrameKind.PROBE, Role.INITIATOR, 1, at=100.0), ADDR_A, now=0.0).reply
    old = frame(FrameKind.PROBE, Role.INITIATOR, 2, at=69.0)  # made, then held back 31 s

    assert b.receive(old, ELSEWHERE, now=0.0) == Received(authentic=True)
    assert b.statistics().replays == 1


def test_a_probe_from_the_address_it_was_sent_to_went_through_a_forwarder() -> None:
    """alice probes the forwarder at ELSEWHERE, which sends it on to bob from ELSEWHERE: bob
    refuses to answer for an address that is not where he was reached."""
    a, b = pair()
    probe = a.probe(ELSEWHERE, now=0.0)

    assert b.receive(probe, ELSEWHERE, now=0.0) == Received(authentic=True)
    assert b.statistics() == stats(0, 1, 0, 0, looped=1)
    # the same probe straight from alice is still fresh: a loop burns no nonce
    assert b.receive(probe, ADDR_A, now=0.0).reply is not None


def test_an_ack_must_name_the_address_it_comes_from() -> None:
    a, _ = pair()
    a.probe(ADDR_B, now=0.0)

    elsewhere = frame(FrameKind.ACK, Role.RESPONDER, 1, to=ELSEWHERE)
    assert a.receive(elsewhere, ADDR_B, now=0.1) == Received(authentic=True)
    assert a.receive(frame(FrameKind.ACK, Role.RESPONDER, 1), ADDR_B, now=0.1).proven == ADDR_B


def test_probes_from_one_unproven_source_are_probed_back_once_a_gap() -> None:
    a = PathProver(LINK, KEY, Role.INITIATOR, probe_back_gap=1.0, random_bytes=counter())
    backs = [
        a.receive(
            frame(FrameKind.PROBE, Role.RESPONDER, n, to=ADDR_A), ADDR_B, now=n / 10
        ).probe_back
        for n in range(1, 25)
    ]
    assert backs.count(True) == 24  # nothing probed ADDR_B yet: the caller does on each True

    for n in range(30, 54):
        now = n / 10
        received = a.receive(frame(FrameKind.PROBE, Role.RESPONDER, n, to=ADDR_A), ADDR_B, now)
        if received.probe_back:
            a.probe(ADDR_B, now)
    assert a.statistics().probes_sent == 3  # at 3.0, 4.0 and 5.0


@given(
    replays=st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=40),
    source=addresses,
)
def test_whatever_is_replayed_from_wherever_each_probe_is_answered_once(
    replays: list[int], source: Address
) -> None:
    a, b = pair()
    probes = [a.probe(ADDR_B, now=0.0) for _ in range(6)]
    answered = [b.receive(probes[i], source, now=1.0).reply is not None for i in replays]

    assert answered.count(True) == (0 if source == ADDR_B else len(set(replays)))
