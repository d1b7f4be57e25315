"""The relay under attack (issue 11): one source hoarding registrations or sessions, and a
spoofed or replayed source address moving a relayed node. Each test reproduces the attack."""

from __future__ import annotations

from contextlib import AsyncExitStack

import attrs
import trio
import trio.testing

from macula_nat.identity import NodeKey
from macula_nat.net.address import Address
from macula_nat.net.sim import Preset, SimHost, add_site
from macula_nat.relay import RelayClient, RelayConfig, frames, open_relay_client
from macula_nat.relay.core import RelayCore
from macula_nat.relay.frames import Reason
from macula_nat.relay.handshake import ClientHandshake
from macula_nat.relay.link import Verdict

from .support import PATIENCE, Mesh, connect, exchange, open_mesh
from .test_core import MALLORY, A, B, Node, address_of, new_core, open_session, register

Sends = list[tuple[bytes, Address]]
UNLIMITED = 1e12
FLOODER_IP = "203.0.113.66"
OPEN = RelayConfig(
    handshake_rate=UNLIMITED,
    handshake_burst=UNLIMITED,
    control_rate=UNLIMITED,
    control_burst=UNLIMITED,
)
"""No per-source datagram rate: these attackers stay within any rate, so only the shares act."""


def try_register(
    core: RelayCore, node: Node, now: float = 0.0
) -> tuple[frames.Reason | None, Sends]:
    """Register ``node``: None and what else the relay sent, or the refusal's reason."""
    handshake = ClientHandshake(node.key, core.relay_id)
    [(challenge, _)] = core.receive(frames.encode(handshake.hello()), node.address, now)
    decoded = frames.decode(challenge)
    assert isinstance(decoded, frames.Challenge)
    request = handshake.on_challenge(decoded)
    assert request is not None
    sends = core.receive(frames.encode(request), node.address, now)
    answer, to = sends[-1]
    assert to == node.address
    reply = frames.decode(answer)
    if isinstance(reply, frames.Refused):
        return reply.reason, sends[:-1]
    assert isinstance(reply, frames.Registered), reply
    node.link = handshake.on_registered(reply)
    return None, sends[:-1]


async def client_on(stack: AsyncExitStack, mesh: Mesh, host: SimHost) -> RelayClient:
    """A registered client on ``host`` (many may share one host, hence one IP), run by ``stack``."""
    endpoint = await host.bind()
    client = RelayClient(endpoint, mesh.relay.address, NodeKey.generate(), mesh.relay.node_id)
    await stack.enter_async_context(open_relay_client(client, timeout=PATIENCE))
    return client


def new_host(mesh: Mesh) -> SimHost:
    return add_site(mesh.internet.public, Preset.OPEN_INTERNET).host


def closes(nodes: list[Node], sends: Sends) -> dict[Node, frames.Close]:
    """The CLOSE frames in ``sends``, by the node each was sealed for."""
    found: dict[Node, frames.Close] = {}
    for data, to in sends:
        for node in nodes:
            assert node.link is not None
            if to == node.address and node.link.authenticate(data) is not Verdict.FORGED:
                frame = frames.decode(data)
                assert isinstance(frame, frames.Sealed)
                close = frame.frame()
                assert isinstance(close, frames.Close), close
                found[node] = close
    return found


# -- point 3: registrations -----------------------------------------------------------------------


def test_one_ip_with_many_keys_filling_the_registrations_does_not_lock_newcomers_out() -> None:
    core = new_core(attrs.evolve(OPEN, max_registrations=100))
    flood = [Node((FLOODER_IP, 10_000 + n)) for n in range(100)]
    for node in flood:
        assert try_register(core, node)[0] is None  # nobody else wants one yet
    newcomers = [Node((f"198.51.100.{n}", 4000)) for n in range(1, 31)]

    outcomes = [try_register(core, node) for node in newcomers]
    one_more = try_register(core, Node((FLOODER_IP, 9999)))

    assert [reason for reason, _ in outcomes] == [None] * 30
    evicted = closes(flood, [send for _, sends in outcomes for send in sends])
    assert len(evicted) == 30  # each newcomer took one flooder registration, which was told
    assert set(evicted.values()) == {frames.Close(0, Reason.SOURCE_SHARE)}
    assert one_more[0] is Reason.SOURCE_SHARE  # over its share while others want slots
    fairness = core.statistics().fairness
    assert fairness.largest_registrations == 70 and fairness.registration_share == 10
    assert fairness.registrations_evicted == 30
    assert core.statistics().refusals.source_share == 1


def test_an_ipv6_host_is_one_source_across_its_whole_slash_64() -> None:
    core = new_core(attrs.evolve(OPEN, max_registrations=20))
    flood = [Node((f"2001:db8:66:1::{n:x}", 4000 + n)) for n in range(1, 21)]
    for node in flood:
        assert try_register(core, node)[0] is None

    newcomer, _ = try_register(core, Node(("2001:db8:77:1::1", 4000)))
    same_host, _ = try_register(core, Node(("2001:db8:66:1:ffff::9", 4000)))

    assert newcomer is None
    assert same_host is Reason.SOURCE_SHARE


def test_a_node_registering_again_from_another_source_moves_its_slot() -> None:
    core = new_core(attrs.evolve(OPEN, max_registrations=2))  # a share of 1 each
    mover, other = Node(("192.0.2.1", 4000)), Node(("192.0.2.2", 4000))
    assert try_register(core, mover)[0] is None and try_register(core, other)[0] is None

    mover.address = ("192.0.2.3", 4000)
    moved, _ = try_register(core, mover, now=1.0)  # full, but it takes no new slot
    core.receive(mover.sealed(frames.Close(0, Reason.NORMAL)), mover.address, 2.0)
    newcomer, _ = try_register(core, Node(("192.0.2.4", 4000)), now=3.0)

    assert moved is None
    assert newcomer is None  # the slot the mover held, at either source, is free again
    assert core.statistics().fairness.largest_registrations == 1


async def test_an_evicted_client_is_told_and_not_let_back_in_over_its_share(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = attrs.evolve(OPEN, max_registrations=4, registration_source_share=0.25)
    async with open_mesh(config) as mesh, AsyncExitStack() as stack:
        host = new_host(mesh)
        flood = [await client_on(stack, mesh, host) for _ in range(4)]  # one IP: the whole table
        newcomer = await client_on(stack, mesh, new_host(mesh))
        await trio.sleep(1.0)
        [evicted] = [client for client in flood if client.last_close is not None]
        await trio.sleep(5.0)  # it tries again, and again...
        registered = newcomer.registration.value is not None, evicted.registration.value is not None

    assert registered == (True, False)  # before: the newcomer never got in (max_registrations)
    assert evicted.last_close is Reason.SOURCE_SHARE
    assert evicted.last_refusal is Reason.SOURCE_SHARE


# -- point 4: sessions ----------------------------------------------------------------------------


def test_fourteen_keys_from_one_ip_holding_all_sessions_do_not_lock_others_out() -> None:
    core = new_core(OPEN)  # the default limits: 100 sessions, 16 per node, a 10% share
    flood = [Node((FLOODER_IP, 10_000 + n)) for n in range(14)]
    victim, peer = Node(("198.51.100.7", 4000)), Node(("198.51.100.8", 4000))
    for node in [*flood, victim, peer]:
        register(core, node)
    by_session: dict[int, tuple[Node, Node]] = {}
    request = 0
    while len(core.sessions()) < 100:
        shift = request // 14 + 1
        a, b = flood[request % 14], flood[(request % 14 + shift) % 14]
        request += 1
        by_session[open_session(core, a, b, request)] = (a, b)

    sends = core.receive(victim.sealed(frames.RelayRequest(1, peer.id)), victim.address, 1.0)
    again = core.receive(flood[0].sealed(frames.RelayRequest(999, peer.id)), flood[0].address, 1.0)

    answers = [victim.opened(data) for data, to in sends if to == victim.address]
    assert isinstance(answers[0], frames.RelayAccepted)  # before: max_sessions_reached
    evicted = {s.session for s in closes(flood, sends).values()}
    assert len(evicted) == 1
    [(ended, _)] = [(s, by_session[s]) for s in evicted]
    assert set(closes(list(by_session[ended]), sends)) == set(by_session[ended])  # both told
    refused = flood[0].opened(again[0][0])
    assert refused == frames.RequestRefused(999, Reason.SOURCE_SHARE)
    fairness = core.statistics().fairness
    assert fairness.largest_sessions == 99 and fairness.session_share == 10
    assert fairness.sessions_evicted == 1


async def test_both_ends_of_an_evicted_session_are_told(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with (
        open_mesh(OPEN, max_sessions=2, session_source_share=0.5) as mesh,
        AsyncExitStack() as stack,
    ):
        host = new_host(mesh)
        a, b = [await client_on(stack, mesh, host) for _ in range(2)]  # one IP
        c, d, e, f = [await client_on(stack, mesh, new_host(mesh)) for _ in range(4)]
        first, first_far = await connect(a, c)
        await trio.sleep(1.0)  # so that the second is the more recently active
        second, _ = await connect(b, d)
        await connect(e, f)  # before: refused, max_sessions_reached
        await trio.sleep(1.0)
        ends = first.closed_reason, first_far.closed_reason, second.closed_reason

    assert ends == (Reason.SOURCE_SHARE, Reason.SOURCE_SHARE, None)


# -- point 9: roaming -----------------------------------------------------------------------------


def test_a_genuine_frame_replayed_from_another_address_does_not_move_the_node() -> None:
    core = new_core(OPEN)
    a, b = Node(A), Node(B)
    register(core, a)
    register(core, b)
    session = open_session(core, a, b)
    captured = a.sealed(frames.Data(session, b"mine"))

    sends = core.receive(captured, MALLORY, 1.0)  # the attacker's copy arrives first
    [(reply, to)] = core.receive(b.sealed(frames.Data(session, b"for a")), B, 1.1)

    assert address_of(core, a) == A  # before: MALLORY, and a's traffic went there
    assert to == A and a.opened(reply) == frames.Data(session, b"for a")
    [challenge] = [data for data, to in sends if to == MALLORY]
    assert isinstance(a.opened(challenge), frames.PathChallenge)  # answerable only with a's key
    assert len(challenge) <= 3 * len(captured)  # to an unproven address: amplifies nothing
    assert core.statistics().fairness.path_challenges == 1


def test_only_the_challenged_address_answering_with_its_fresh_nonce_moves_the_node() -> None:
    core = new_core(OPEN)
    a, b = Node(A), Node(B)
    register(core, a)
    register(core, b)
    moved: Address = ("203.0.113.1", 50000)
    sends = core.receive(a.sealed(frames.Keepalive(1)), MALLORY, 1.0)
    [probe] = [data for data, to in sends if to == MALLORY]  # and the PONG goes to A
    mallory_nonce = a.opened(probe)
    assert isinstance(mallory_nonce, frames.PathChallenge)
    # The node answers the challenge it was shown (say, forwarded by Mallory): from its own
    # address, which was never challenged, so nothing moves.
    core.receive(a.sealed(frames.PathResponse(mallory_nonce.nonce)), A, 1.1)
    assert address_of(core, a) == A
    # A genuine move: the node's frames come from ``moved``; it answers the challenge from there.
    sends = core.receive(a.sealed(frames.Keepalive(2)), moved, 2.0)
    [genuine] = [a.opened(data) for data, to in sends if to == moved]
    assert isinstance(genuine, frames.PathChallenge)
    response = a.sealed(frames.PathResponse(genuine.nonce))
    wrong = a.sealed(frames.PathResponse(mallory_nonce.nonce))

    core.receive(wrong, moved, 2.1)  # another address's nonce: nothing
    assert address_of(core, a) == A
    core.receive(response, moved, 2.2)
    assert address_of(core, a) == moved
    core.receive(response, MALLORY, 2.3)  # replayed: the window refuses it
    statistics = core.statistics()
    assert address_of(core, a) == moved
    assert statistics.roams == 1 and statistics.fairness.path_validated == 1
    assert statistics.drops.replayed == 1


def test_a_path_challenge_answered_after_its_lifetime_moves_nothing() -> None:
    core = new_core(OPEN)
    a = Node(A)
    register(core, a)
    moved: Address = ("203.0.113.1", 50000)
    sends = core.receive(a.sealed(frames.Keepalive(1)), moved, 1.0)
    [probe] = [data for data, to in sends if to == moved]
    challenge = a.opened(probe)
    assert isinstance(challenge, frames.PathChallenge)

    late = 1.0 + OPEN.path_challenge_lifetime
    core.receive(a.sealed(frames.PathResponse(challenge.nonce)), moved, late)

    assert address_of(core, a) == A


async def test_a_relayed_node_whose_nat_rebinds_keeps_its_session(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_mesh() as mesh:
        a = await mesh.node(Preset.PORT_RESTRICTED_CONE)
        b = await mesh.node()
        mine, theirs = await connect(a, b)
        assert await exchange(mine, theirs, b"before") == b"before"
        [nat] = mesh.sites[a].nats
        nat.rebind()

        after = await exchange(mine, theirs, b"after")  # from a new public port: challenged
        await trio.sleep(1.0)  # the challenge's round trip; until then the relay sends to the old
        back = await exchange(theirs, mine, b"back")  # reaches a at its new address
        statistics = mesh.relay.statistics()

    assert (after, back) == (b"after", b"back")
    assert statistics.roams == 1 and statistics.fairness.path_validated == 1
