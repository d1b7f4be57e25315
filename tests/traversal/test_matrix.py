"""The NAT pair matrix on the simulated internet: every pair of the issue's NAT types, at 0% and
5% loss, connects with the method the strategy table expects, in bounded (simulated) time.

Expected final method, from the plan over the two detected profiles: a direct dial when the
target accepts unsolicited datagrams; the relay when a random-port side faces a port-dependent
symmetric peer; a punch otherwise (the relay carrying traffic meanwhile).
"""

from __future__ import annotations

import itertools

import pytest
import trio
from trio.testing import MockClock

from macula_nat.connection.link import ConnectionMethod
from macula_nat.net.sim import Preset
from macula_nat.traversal.strategy import Method, Side, choose

from .world import open_world

NAT_TYPES = [
    Preset.OPEN_INTERNET,
    Preset.FULL_CONE,
    Preset.RESTRICTED_CONE,
    Preset.PORT_RESTRICTED_CONE,
    Preset.SYMMETRIC_RANDOM,
    Preset.SYMMETRIC_SEQUENTIAL,
    Preset.EIM_RANDOM_PORT,
    Preset.CGNAT_FULL_CONE,
]
PAIRS = list(itertools.product(NAT_TYPES, NAT_TYPES))
MESSAGES = 10


@pytest.mark.parametrize("loss", [0.0, 0.05], ids=["0%", "5%"])
@pytest.mark.parametrize(("local", "remote"), PAIRS, ids=[f"{a}-{b}" for a, b in PAIRS])
async def test_every_nat_pair_connects_by_the_expected_method(
    local: Preset, remote: Preset, loss: float, autojump_clock: MockClock
) -> None:
    seed = NAT_TYPES.index(local) * 8 + NAT_TYPES.index(remote) + (100 if loss else 0)
    async with open_world(seed=seed, loss=loss) as world:
        alice = await world.node(local, "alice")
        bob = await world.node(remote, "bob")
        assert alice.detector.profile.value is not None
        assert bob.detector.profile.value is not None
        plan = choose(alice.detector.profile.value, bob.detector.profile.value)
        started = trio.current_time()
        with trio.fail_after(40):
            connection = await alice.connector.connect(bob.node_id)
            accepted = await bob.connector.accept()
            await connection.send_message(b"first")
            assert await accepted.receive_message() == b"first"
            first_byte = trio.current_time() - started
            with trio.move_on_after(20):  # both ends, each on its own proof
                await connection.method.wait_value(lambda m: m is not ConnectionMethod.RELAYED)
                await accepted.method.wait_value(lambda m: m is not ConnectionMethod.RELAYED)
            direct_after = trio.current_time() - started
            for i in range(MESSAGES):
                await connection.send_message(b"%d" % i)
                await accepted.send_message(b"%d" % i)
            for i in range(MESSAGES):
                assert await accepted.receive_message() == b"%d" % i
                assert await connection.receive_message() == b"%d" % i
            method = connection.info().connection_method
            assert accepted.info().connection_method is method

    if plan.method is Method.DIRECT and plan.initiator in (None, Side.LOCAL):
        assert method is ConnectionMethod.DIRECT
    elif plan.method is Method.RELAY:
        assert method is ConnectionMethod.RELAYED
    else:
        assert method is ConnectionMethod.PUNCHED, plan.reason
    # simulated time, deterministic per seed: 20 ms between nodes, 40 ms through the relay
    assert first_byte <= (0.3 if not loss else 5.0)
    if method is not ConnectionMethod.RELAYED:
        # a birthday attempt succeeds ~97% of the time: a second one may be needed
        assert direct_after <= (15.0 if loss or plan.birthday else 1.5)
