"""The relay under attack (issue 11, points 3, 4 and 9), on the sans-IO core at its default limits.

- Registrations: one IP registers keys until all 10,000 registrations are its own; then 9,000
  newcomers, each from an IP of its own, register. Printed: the share of newcomers let in, the
  flooding IP's share of the table once they are in (bound: ``registration_source_share``, 10%),
  and the flooder's own new keys let in meanwhile. Also what a REGISTER costs the relay when it
  evicts one of a 10,000-key holder's registrations, beside one into free room.
- Sessions: 14 keys from one IP open all 100 sessions among themselves; then 90 other sources
  each ask for one. Same three figures (bound: ``session_source_share``, 10%).
- Roaming: a registered node's authentic frame, replayed from another address first; 1 if the
  relay then sends the node's traffic there, 0 if it keeps it where the node proved to be.
"""

from __future__ import annotations

import statistics
import time
from typing import Final

import trio

from macula_nat.identity import NodeKey
from macula_nat.net.address import Address
from macula_nat.relay import RelayConfig, RelaySettings, frames
from macula_nat.relay.core import RelayCore
from macula_nat.relay.handshake import ClientHandshake
from macula_nat.relay.link import Link

from .timing import Figure

UNLIMITED: Final = 1e12
CONFIG: Final = RelayConfig(
    handshake_rate=UNLIMITED,
    handshake_burst=UNLIMITED,
    control_rate=UNLIMITED,
    control_burst=UNLIMITED,
)
"""Default limits but the per-source datagram rates: the attackers here stay within any rate."""
FLOODER: Final = "203.0.113.66"
NEWCOMERS: Final = 9_000
SESSION_NEWCOMERS: Final = 90
FLOOD_KEYS: Final = 14
COST_SAMPLES: Final = 300


def _ip(n: int) -> str:
    return f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


class _Node:
    __slots__ = ("address", "key", "link")

    def __init__(self, address: Address) -> None:
        self.address = address
        self.key = NodeKey.generate()
        self.link: Link | None = None

    def register(self, core: RelayCore) -> tuple[bytes, float]:
        """Register; the relay's answer and the seconds its REGISTER took the relay."""
        handshake = ClientHandshake(self.key, core.relay_id)
        [(data, _)] = core.receive(frames.encode(handshake.hello()), self.address, 0.0)
        challenge = frames.decode(data)
        assert isinstance(challenge, frames.Challenge)
        register = handshake.on_challenge(challenge)
        assert register is not None
        wire = frames.encode(register)
        start = time.perf_counter()
        sends = core.receive(wire, self.address, 0.0)
        spent = time.perf_counter() - start
        answer = sends[-1][0]
        registered = frames.decode(answer)
        if isinstance(registered, frames.Registered):
            self.link = handshake.on_registered(registered)
        return answer, spent

    def sealed(self, frame: frames.SessionFrame) -> bytes:
        assert self.link is not None
        return self.link.seal(frame)


def _new_core(config: RelayConfig = CONFIG) -> RelayCore:
    core = RelayCore(NodeKey.generate(), config)
    core.enable(RelaySettings())
    return core


def _admitted(answer: bytes) -> bool:
    return isinstance(frames.decode(answer), frames.Registered)


def _registrations() -> list[Figure]:
    core = _new_core()
    capacity = CONFIG.max_registrations
    port = 1024
    while len(core.registrations()) < capacity:
        _Node((FLOODER, port)).register(core)
        port += 1
    filled = core.statistics().fairness.largest_registrations / capacity
    free_costs = []
    evict_costs = []
    flooder_in = 0
    newcomers_in = 0
    for n in range(NEWCOMERS):
        answer, spent = _Node((_ip(n + 1), 4000)).register(core)
        newcomers_in += _admitted(answer)
        if n < COST_SAMPLES:
            evict_costs.append(spent)
        if n % 30 == 0:  # the flooder keeps trying with new keys
            flooder_in += _admitted(_Node((FLOODER, port)).register(core)[0])
            port += 1
    held = core.statistics().fairness.largest_registrations
    empty = _new_core()
    for n in range(COST_SAMPLES):
        free_costs.append(_Node((_ip(n + 1), 4000)).register(empty)[1])
    share = CONFIG.registration_source_share
    return [
        Figure(
            f"under attack: registrations: one IP filled all {capacity:,}; newcomers let in",
            100 * newcomers_in / NEWCOMERS,
            "%",
            goal="100% (before: 0%)",
        ),
        Figure(
            f"under attack: registrations: the flooding IP's share after {NEWCOMERS:,} newcomers",
            100 * held / capacity,
            "%",
            baseline=100 * filled,
            goal=f"<= {share:.0%} (baseline: its share when full)",
        ),
        Figure(
            "under attack: registrations: the flooder's new keys let in while full",
            flooder_in,
            "keys",
            goal="0",
        ),
        Figure(
            "under attack: REGISTER that evicts from a 10,000-key IP, vs into free room",
            statistics.median(evict_costs) * 1e6,
            "us",
            baseline=statistics.median(free_costs) * 1e6,
            goal="<= 3x",
        ),
    ]


def _sessions() -> list[Figure]:
    core = _new_core()
    settings = RelaySettings()
    flood = [_Node((FLOODER, 10_000 + n)) for n in range(FLOOD_KEYS)]
    others = [_Node((_ip(n + 1), 4000)) for n in range(2 * SESSION_NEWCOMERS)]
    for node in flood + others:
        node.register(core)
    request = 0
    while len(core.sessions()) < settings.max_sessions:
        shift = request // FLOOD_KEYS + 1
        a, b = flood[request % FLOOD_KEYS], flood[(request % FLOOD_KEYS + shift) % FLOOD_KEYS]
        request += 1
        core.receive(a.sealed(frames.RelayRequest(request, b.key.node_id)), a.address, 1.0)
    filled = core.statistics().fairness.largest_sessions / settings.max_sessions
    admitted = 0
    flooder_in = 0
    for n in range(SESSION_NEWCOMERS):
        a, b = others[2 * n], others[2 * n + 1]
        before = core.statistics().sessions_opened
        core.receive(a.sealed(frames.RelayRequest(1, b.key.node_id)), a.address, 2.0)
        admitted += core.statistics().sessions_opened - before
        request += 1
        c, d = flood[n % FLOOD_KEYS], flood[(n + 1) % FLOOD_KEYS]
        before = core.statistics().sessions_opened
        core.receive(c.sealed(frames.RelayRequest(request, d.key.node_id)), c.address, 2.0)
        flooder_in += core.statistics().sessions_opened - before
    held = core.statistics().fairness.largest_sessions
    share = settings.session_source_share
    return [
        Figure(
            f"under attack: sessions: {FLOOD_KEYS} keys of one IP took all "
            f"{settings.max_sessions}; newcomers let in",
            100 * admitted / SESSION_NEWCOMERS,
            "%",
            goal="100% (before: 0%)",
        ),
        Figure(
            f"under attack: sessions: the flooding IP's share after {SESSION_NEWCOMERS} newcomers",
            100 * held / settings.max_sessions,
            "%",
            baseline=100 * filled,
            goal=f"<= {share:.0%} (baseline: its share when full)",
        ),
        Figure(
            "under attack: sessions: the flooder's new sessions let in while full",
            flooder_in,
            "sessions",
            goal="0",
        ),
    ]


def _roaming() -> list[Figure]:
    core = _new_core()
    a, b = _Node(("198.51.100.1", 4000)), _Node(("198.51.100.2", 4000))
    a.register(core)
    b.register(core)
    request = frames.RelayRequest(1, b.key.node_id)
    [(accepted, _), _notice] = core.receive(a.sealed(request), a.address, 1.0)
    assert a.link is not None
    opened = a.link.open(accepted)
    assert isinstance(opened, frames.RelayAccepted)
    session = opened.session
    attacker: Address = ("203.0.113.66", 6666)
    core.receive(a.sealed(frames.Data(session, b"captured")), attacker, 2.0)  # the copy first
    sends = core.receive(b.sealed(frames.Data(session, b"for a")), b.address, 2.1)
    moved = any(to == attacker for _, to in sends)
    return [
        Figure(
            "under attack: roaming: a replayed frame from elsewhere moves the node (1 = yes)",
            float(moved),
            "",
            goal="0 (before: 1)",
        )
    ]


async def run() -> list[Figure]:
    figures = _registrations()
    await trio.lowlevel.checkpoint()
    figures += _sessions()
    await trio.lowlevel.checkpoint()
    return figures + _roaming()
