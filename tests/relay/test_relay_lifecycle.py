"""Sessions as actors, and the relay's life: crashes, disable, shutdown, nodes coming and going."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from macula_nat.actors import ActorRef
from macula_nat.identity import NodeId, NodeKey
from macula_nat.net.sim import open_internet
from macula_nat.relay import (
    ClientConfig,
    Reason,
    RegistrationFailed,
    RelayClient,
    RelayConfig,
    RelayNode,
    SessionClosed,
    open_relay,
    open_relay_client,
)
from macula_nat.relay.node import RelayServer, SessionEndCallback, SessionInfo

from .support import PATIENCE, RELAY_IP, RELAY_LISTEN, connect, exchange, open_mesh

Ended = list[tuple[NodeId, NodeId, int]]


def recorder(log: Ended) -> SessionEndCallback:
    def on_session_end(session: SessionInfo) -> None:
        assert session.reason is not None  # an ended session says why
        log.append((session.peer_a, session.peer_b, session.bytes_transferred))

    return on_session_end


async def test_each_session_runs_as_an_actor_under_the_session_supervisor(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_mesh() as mesh:
        a, b, c = [await mesh.node() for _ in range(3)]
        await connect(a, b)
        await connect(b, c)
        await trio.sleep(0.1)
        supervisor = mesh.relay._sessions
        assert supervisor is not None
        children = set(await supervisor.which_children())
        actors = {info.actor for info in mesh.relay.sessions()}

    assert len(children) == 2
    assert actors == children


async def test_a_burst_of_requests_larger_than_the_server_mailbox_gets_every_session_an_actor(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(RelayServer, "mailbox_capacity", 8)
    burst = 200
    config = RelayConfig(control_rate=1e6, control_burst=1e6)
    async with open_mesh(config, max_sessions=burst, max_sessions_per_node=burst) as mesh:
        a, b = await mesh.node(), await mesh.node(config=ClientConfig(accept_backlog=burst))
        async with trio.open_nursery() as nursery:
            for _ in range(burst):
                nursery.start_soon(a.request_relay, b.node_id)
        await trio.sleep(1.0)
        statistics = mesh.relay.statistics()

    assert statistics.sessions == statistics.session_actors == burst


async def test_a_crashed_session_actor_costs_only_its_session(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ended: Ended = []
    started: list[tuple[NodeId, NodeId]] = []
    async with open_mesh(
        on_session_start=lambda s: started.append((s.peer_a, s.peer_b)),
        on_session_end=recorder(ended),
    ) as mesh:
        a, b, c = [await mesh.node() for _ in range(3)]
        doomed, doomed_far = await connect(a, b)
        kept, kept_far = await connect(a, c)
        other, other_far = await connect(b, c)
        await exchange(doomed, doomed_far, b"before")
        await trio.sleep(0.1)
        [actor] = [s.actor for s in mesh.relay.sessions() if s.id == doomed.id]
        assert isinstance(actor, ActorRef)
        actor.cast("an unexpected message")  # a session actor crashes on one
        with trio.fail_after(PATIENCE), pytest.raises(SessionClosed) as closed:
            await doomed_far.receive()
        still = [
            await exchange(kept, kept_far, b"kept"),
            await exchange(other_far, other, b"other"),
        ]
        statistics = mesh.relay.statistics()

    assert closed.value.reason is Reason.SESSION_FAILED
    assert doomed.closed_reason is Reason.SESSION_FAILED
    assert isinstance(actor.exit_reason, Exception)
    assert still == [b"kept", b"other"]
    assert statistics.sessions == 2
    assert len(started) == 3
    assert ended[0] == (a.node_id, b.node_id, len(b"before"))


async def test_a_crashed_server_comes_back_on_its_address_with_every_session(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_mesh() as mesh:
        a, b = await mesh.node(), await mesh.node()
        mine, theirs = await connect(a, b)
        server = mesh.relay._server
        assert server is not None
        server.cast("an unexpected message")
        await server.wait_exited()
        await trio.sleep(0.1)
        after = await exchange(mine, theirs, b"after the crash")
        restarted = mesh.relay._server
        assert restarted is not None and restarted is not server and restarted.alive
        assert mesh.relay.address == RELAY_LISTEN

    assert after == b"after the crash"


async def test_disable_ends_every_session_with_its_callback_before_returning(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ended: Ended = []
    async with open_mesh(on_session_end=recorder(ended)) as mesh:
        a, b, c = [await mesh.node() for _ in range(3)]
        first, first_far = await connect(a, b)
        second, _ = await connect(c, a)
        await exchange(first, first_far, b"12345")
        await mesh.relay.disable()
        ended_at_return = list(ended)
        with trio.fail_after(PATIENCE), pytest.raises(SessionClosed) as closed:
            await first_far.receive()
        await trio.sleep(0.1)
        statistics = mesh.relay.statistics()
        registration = a.registration.value
        await trio.sleep(5.0)  # a keeps trying to register, and is refused

    assert sorted(ended_at_return) == sorted([(a.node_id, b.node_id, 5), (c.node_id, a.node_id, 0)])
    assert closed.value.reason is Reason.RELAY_DISABLED
    assert second.closed_reason is Reason.RELAY_DISABLED
    assert (statistics.enabled, statistics.sessions, statistics.registrations) == (False, 0, 0)
    assert registration is None and a.last_close is Reason.RELAY_DISABLED
    assert a.last_refusal is Reason.RELAY_DISABLED


async def test_a_relay_that_stops_tells_its_nodes_to_go_elsewhere(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ended: Ended = []
    async with open_internet() as internet:
        relay = RelayNode(internet.add_host([RELAY_IP]), RELAY_LISTEN, NodeKey.generate())
        a_end = await internet.add_host(["203.0.113.1"]).bind()
        b_end = await internet.add_host(["203.0.113.2"]).bind()
        a = RelayClient(a_end, RELAY_LISTEN, NodeKey.generate(), relay.node_id)
        b = RelayClient(b_end, RELAY_LISTEN, NodeKey.generate(), relay.node_id)
        async with open_relay_client(a, timeout=None), open_relay_client(b, timeout=None):
            async with open_relay(relay):
                await relay.enable(on_session_end=recorder(ended))
                await a.wait_registered()
                await b.wait_registered()
                mine, _ = await connect(a, b)
            await trio.sleep(0.1)
            reasons = (a.last_close, mine.closed_reason, a.registration.value)

    assert reasons == (Reason.RELAY_SHUTDOWN, Reason.RELAY_SHUTDOWN, None)
    assert ended == [(a.node_id, b.node_id, 0)]


async def test_a_node_that_leaves_frees_its_registration_and_sessions(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_mesh() as mesh:
        b = await mesh.node()
        endpoint = await mesh.internet.add_host(["203.0.113.50"]).bind()
        a = RelayClient(endpoint, RELAY_LISTEN, NodeKey.generate(), mesh.relay.node_id)
        async with open_relay_client(a):
            _, theirs = await connect(a, b)
            assert mesh.relay.statistics().registrations == 2
        with trio.fail_after(PATIENCE), pytest.raises(SessionClosed) as closed:
            await theirs.receive()
        registrations = mesh.relay.statistics().registrations

    assert closed.value.reason is Reason.PEER_GONE
    assert registrations == 1


async def test_registering_with_no_relay_there_fails_clearly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_internet() as internet:
        endpoint = await internet.add_host(["203.0.113.1"]).bind()
        client = RelayClient(endpoint, RELAY_LISTEN, NodeKey.generate(), config=ClientConfig())
        with pytest.raises(RegistrationFailed, match="not registered within 10"):
            async with open_relay_client(client, timeout=10.0):
                pass


async def test_a_node_refuses_a_relay_that_is_not_the_one_it_meant(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_mesh() as mesh:
        endpoint = await mesh.internet.add_host(["203.0.113.1"]).bind()
        expected = NodeKey.generate().node_id  # the directory named another relay
        client = RelayClient(endpoint, RELAY_LISTEN, NodeKey.generate(), expected)
        with pytest.raises(RegistrationFailed):
            async with open_relay_client(client, timeout=5.0):
                pass

    assert mesh.relay.statistics().registrations == 0
