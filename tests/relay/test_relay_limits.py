"""The relay's limits, on the simulated internet: each one holds, and says so clearly."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from macula_nat.identity import NodeId, NodeKey
from macula_nat.net.sim import Preset
from macula_nat.relay import (
    ClientConfig,
    Reason,
    RelayConfig,
    RelayRefused,
    SessionClosed,
    SessionInfo,
)

from .support import PATIENCE, connect, exchange, open_mesh


async def test_max_sessions_reached_is_a_clear_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Each source may start all sessions: the plain total cap (fair shares: test_relay_attacks).
    async with open_mesh(max_sessions=2, session_source_share=1.0) as mesh:
        a, b, c = [await mesh.node() for _ in range(3)]
        await connect(a, b)
        await connect(a, c)
        with pytest.raises(RelayRefused, match="max_sessions_reached") as refused:
            await b.request_relay(c.node_id)
        statistics = mesh.relay.statistics()

    assert refused.value.reason is Reason.MAX_SESSIONS_REACHED
    assert statistics.sessions == 2
    assert statistics.refusals.max_sessions_reached == 1


async def test_a_node_takes_part_in_at_most_its_cap_of_sessions(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_mesh(max_sessions=10, max_sessions_per_node=2) as mesh:
        hub = await mesh.node()
        spokes = [await mesh.node() for _ in range(3)]
        await connect(hub, spokes[0])
        await connect(spokes[1], hub)
        with pytest.raises(RelayRefused, match="per_node_cap"):
            await hub.request_relay(spokes[2].node_id)
        with pytest.raises(RelayRefused, match="per_node_cap"):
            await spokes[2].request_relay(hub.node_id)
        await connect(spokes[2], spokes[0])  # others still may

    assert mesh.relay.statistics().refusals.per_node_cap == 2


async def test_sessions_to_unknown_nodes_and_to_oneself_are_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_mesh() as mesh:
        a = await mesh.node()
        with pytest.raises(RelayRefused, match="unknown_target"):
            await a.request_relay(NodeKey.generate().node_id)
        with pytest.raises(RelayRefused, match="self_target"):
            await a.request_relay(a.node_id)

    assert mesh.relay.statistics().sessions_opened == 0


async def test_the_bandwidth_limit_holds_within_ten_percent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limit = 128 * 1024.0
    payload = bytes(1200)
    async with open_mesh(bandwidth_limit=limit) as mesh:
        a = await mesh.node(Preset.PORT_RESTRICTED_CONE)
        b = await mesh.node(Preset.SYMMETRIC_RANDOM)
        mine, theirs = await connect(a, b)
        arrivals: list[tuple[float, int]] = []

        async def count() -> None:
            async for data in theirs:
                arrivals.append((trio.current_time(), len(data)))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(count)
            start = trio.current_time()
            batch = 8
            pause = batch * len(payload) / (2 * limit)  # offered at twice the limit
            for _ in range(int(12.0 / pause)):
                for _ in range(batch):
                    await mine.send(payload)
                await trio.sleep(pause)
            await trio.sleep(1.0)
            nursery.cancel_scope.cancel()
        statistics = mesh.relay.statistics()

    # Past the first two seconds the burst is long spent: the rate is the bucket's alone.
    steady = sum(size for at, size in arrivals if start + 2.0 <= at < start + 12.0)
    rate = steady / 10.0
    assert abs(rate - limit) <= 0.1 * limit, f"{rate:.0f} B/s against a limit of {limit:.0f}"
    assert statistics.drops.over_bandwidth > 0


async def test_idle_sessions_end_and_busy_ones_end_at_the_session_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ended: list[tuple[NodeId, NodeId, int, float]] = []

    def on_end(session: SessionInfo) -> None:
        ended.append(
            (session.peer_a, session.peer_b, session.bytes_transferred, trio.current_time())
        )

    async with open_mesh(idle_timeout=10.0, session_timeout=60.0, on_session_end=on_end) as mesh:
        a, b, c = [await mesh.node() for _ in range(3)]
        idle, idle_far = await connect(a, b)
        busy, busy_far = await connect(a, c)
        start = trio.current_time()
        for _ in range(12):  # a datagram every 5 s up to 55 s: never idle for 10 s
            await exchange(busy, busy_far, b"tick")
            await trio.sleep(5.0)
        with pytest.raises(SessionClosed) as idled:
            await idle_far.receive()
        with pytest.raises(SessionClosed) as timed_out:
            await busy_far.receive()

    assert idled.value.reason is Reason.IDLE_TIMEOUT
    assert timed_out.value.reason is Reason.SESSION_TIMEOUT
    assert idle.closed_reason is Reason.IDLE_TIMEOUT
    assert busy.closed_reason is Reason.SESSION_TIMEOUT
    by_peer = {peer_b: (transferred, at - start) for _, peer_b, transferred, at in ended}
    assert by_peer[b.node_id][0] == 0
    assert by_peer[b.node_id][1] == pytest.approx(10.0, abs=0.5)
    assert by_peer[c.node_id][0] == 4 * 12
    assert by_peer[c.node_id][1] == pytest.approx(60.0, abs=0.5)


async def test_a_silent_node_s_registration_expires_and_its_peers_hear_peer_gone(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = RelayConfig(liveness_timeout=20.0, sweep_interval=1.0)
    silent = ClientConfig(keepalive_interval=100.0, liveness_timeout=500.0)
    async with open_mesh(config) as mesh:
        a = await mesh.node(config=silent)
        b = await mesh.node()
        mine, theirs = await connect(a, b)
        with trio.fail_after(PATIENCE), pytest.raises(SessionClosed) as closed:
            await theirs.receive()
        await trio.sleep(1.0)
        close_heard = a.last_close
        await a.wait_registered()  # and it registers again

    assert closed.value.reason is Reason.PEER_GONE
    assert mine.closed_reason is Reason.REGISTRATION_EXPIRED
    assert close_heard is Reason.REGISTRATION_EXPIRED
    assert a.statistics().registrations == 2


async def test_registrations_are_renewed_before_they_expire_and_sessions_carry_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_mesh(RelayConfig(registration_ttl=60.0), idle_timeout=1000.0) as mesh:
        a = await mesh.node(Preset.SYMMETRIC_RANDOM)
        b = await mesh.node(Preset.FULL_CONE)
        mine, theirs = await connect(a, b)
        received = []
        for minute in range(5):
            await trio.sleep(60.0)
            received.append(await exchange(mine, theirs, f"minute {minute}".encode()))
        statistics = mesh.relay.statistics()

    assert received == [f"minute {minute}".encode() for minute in range(5)]
    assert a.statistics().registrations >= 6  # one every 48 s
    assert statistics.registrations == 2 and statistics.sessions == 1


async def test_a_full_accept_backlog_refuses_further_sessions(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_mesh(max_sessions_per_node=10) as mesh:
        target = await mesh.node(config=ClientConfig(accept_backlog=1))
        a, b = await mesh.node(), await mesh.node()
        first = await a.request_relay(target.node_id)
        second = await b.request_relay(target.node_id)
        with trio.fail_after(PATIENCE), pytest.raises(SessionClosed):
            await second.receive()
        accepted = await target.accept()

    assert accepted.id == first.id
    assert second.closed_reason is Reason.NORMAL
