"""The relay's batched serve loop (issue 14): a burst that arrives at once is read as one batch
and every datagram of it is forwarded, in order, also when the socket's send buffer fills in the
middle of the batch (the loop then waits for room instead of dropping)."""

from __future__ import annotations

import trio
import trio.testing

from macula_nat.net.sim import LinkProfile
from macula_nat.net.sim.endpoint import SimEndpoint

from .support import PATIENCE, connect, open_mesh

SLOW = LinkProfile(latency=0.01)
"""The sender's access link: its burst is in flight together, and lands together."""
BURST = 200


async def test_a_burst_is_forwarded_whole_and_in_order_when_the_send_buffer_fills(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_mesh(seed=11, bandwidth_limit=1e9) as mesh:
        a, b = await mesh.node(link=SLOW), await mesh.node()
        mine, theirs = await connect(a, b)
        endpoint = mesh.relay._endpoint
        assert isinstance(endpoint, SimEndpoint)
        endpoint._send_buffer = 16  # the relay's socket fills 16 datagrams into the burst
        payloads = [b"datagram %d" % i for i in range(BURST)]
        for payload in payloads:  # all at one simulated instant: they reach the relay together
            await mine.send(payload)

        with trio.fail_after(PATIENCE):
            received = [await theirs.receive() for _ in payloads]

        assert received == payloads
        assert mesh.relay.statistics().drops.total == 0
