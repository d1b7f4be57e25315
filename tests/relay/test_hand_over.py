"""A node moving its registration with a relay to a new socket (TCP to UDP when UDP returns)
keeps its relayed sessions: the old registration hands them over and leaves without a CLOSE,
the new one (the same node id) adopts them, and the relay carries them on."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from macula_nat.identity import NodeKey
from macula_nat.net.sim import Preset, add_site
from macula_nat.relay import RelayClient, SessionClosed, open_relay_client

from .support import PATIENCE, Mesh, connect, exchange, open_mesh


@pytest.mark.parametrize("hand_over", [True, False], ids=["handed-over", "left"])
async def test_sessions_handed_over_to_a_new_registration_carry_on(
    hand_over: bool, autojump_clock: trio.testing.MockClock
) -> None:
    """Without the hand-over (``left``) the session ends with the old registration on the
    node's side (the relay, which moved the node, drops that registration's CLOSE): what the
    hand-over is for."""
    async with open_mesh(max_sessions=10) as mesh:
        peer = await mesh.node()  # on the mesh's stack: before the nursery, which ends first
        async with trio.open_nursery() as nursery:
            await move(mesh, peer, nursery, hand_over=hand_over)


async def move(mesh: Mesh, peer: RelayClient, nursery: trio.Nursery, *, hand_over: bool) -> None:
    """A node with a session to ``peer`` registers again from a new socket, then its old
    registration leaves (having handed its session over, or not)."""
    site = add_site(mesh.internet.public, Preset.OPEN_INTERNET)
    key = NodeKey.generate()
    old = RelayClient(await site.host.bind(), mesh.relay.address, key, mesh.relay.node_id)
    leave, left = trio.Event(), trio.Event()

    async def run_old(*, task_status: trio.TaskStatus[None]) -> None:
        async with open_relay_client(old, timeout=PATIENCE):
            task_status.started()
            await leave.wait()
        left.set()

    await nursery.start(run_old)
    mine, theirs = await connect(old, peer)
    assert await exchange(mine, theirs, b"before") == b"before"
    new = RelayClient(await site.host.bind(), mesh.relay.address, key, mesh.relay.node_id)
    async with open_relay_client(new, timeout=PATIENCE):  # the relay moves the node here
        if hand_over:
            sessions = old.hand_over()
            assert sessions == [mine]
            new.adopt(sessions)
        leave.set()
        await left.wait()
        if hand_over:
            assert await exchange(mine, theirs, b"to the peer") == b"to the peer"
            assert await exchange(theirs, mine, b"from the peer") == b"from the peer"
            assert mine.closed_reason is None and theirs.closed_reason is None
            assert new.statistics().sessions == 1 and old.statistics().sessions == 0
            assert mesh.relay.statistics().sessions == 1
        else:
            with pytest.raises(SessionClosed):
                await mine.send(b"after")  # ended with its registration: the node lost it
            assert new.statistics().sessions == 0
