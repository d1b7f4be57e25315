"""A birthday socket the peer's probe reaches: it answers, probes back from there, and routes the
peer's QUIC to the link before this side has proven the path itself.

Found in the lab (symmetric <- port-restricted, 1 run in 3): the peer proved a birthday path with
our answer and moved the connection onto it, while this side's own probes had all gone out
before the peer's opened its NAT, and the prover's one-probe-back-a-gap rule (counting probes
from every socket) kept it from probing again. Our answers kept the peer's consent checks happy
while its QUIC arrived at a socket that routed it nowhere: messages lost for good.
"""

from __future__ import annotations

import random

import trio
from trio.testing import MockClock

from macula_nat.connection.link import DirectPath, PeerLink
from macula_nat.net.sim import open_internet
from macula_nat.traversal.config import TraversalConfig
from macula_nat.traversal.prover import PathProver
from macula_nat.traversal.punch_wire import Role
from macula_nat.traversal.puncher import Punch, Puncher

LINK_ID = bytes(range(8))
KEY = bytes(range(32))


async def test_a_probe_on_a_birthday_socket_is_answered_probed_back_and_routed(
    autojump_clock: MockClock,
) -> None:
    async with open_internet(seed=3) as internet, trio.open_nursery() as nursery:
        here = internet.add_host(["203.0.113.15"])
        there = internet.add_host(["203.0.113.20"])
        shared = await here.bind(("0.0.0.0", 4000))
        birthday = await here.bind(("0.0.0.0", 39656))
        peer_socket = await there.bind(("0.0.0.0", 58182))
        peer = ("203.0.113.20", 58182)  # where the peer's NAT maps its socket: no NAT here
        routes: dict[tuple[str, int], PeerLink] = {}
        puncher = Puncher(
            probes=shared,
            quic=shared,
            stack=here,
            config=TraversalConfig(),
            candidates=lambda: ((), ()),
            observe=trio.lowlevel.checkpoint,
            profile=lambda: None,
            routes=routes,
            rng=random.Random(1),
        )
        link = PeerLink(None, ("0.0.0.0", 4000), direct=DirectPath(shared, ("198.51.100.9", 1)))
        mine = PathProver(LINK_ID, KEY, Role.RESPONDER)
        punch = Punch(link, None, mine, Role.RESPONDER, nursery)  # type: ignore[arg-type]
        punch.sockets.append(birthday)
        mine.probe(peer, trio.current_time())  # our probes went out first, from every socket
        theirs = PathProver(LINK_ID, KEY, Role.INITIATOR)

        frame = theirs.probe(("203.0.113.15", 39656), trio.current_time())
        assert await puncher._on_frame(punch, frame, peer, birthday)
        assert routes[peer] is link  # the peer's QUIC on this path reaches the connection
        here_seen = ("203.0.113.15", 39656)
        answered = []
        for _ in range(2):
            with trio.fail_after(1):  # the answer, then the probe back
                data, _source = await peer_socket.receive_from()
            answered.append(theirs.receive(data, here_seen, trio.current_time()))
        assert answered[0].proven == here_seen  # our answer proves the path for the peer
        assert answered[1].reply is not None  # and our probe back asks the peer to prove it for us
        # A second probe on the same socket is answered, not probed back again.
        frame = theirs.probe(here_seen, trio.current_time())
        assert await puncher._on_frame(punch, frame, peer, birthday)
        with trio.move_on_after(1):
            await peer_socket.receive_from()  # the answer
            await peer_socket.receive_from()
            raise AssertionError("probed back twice from one socket")
        nursery.cancel_scope.cancel()
