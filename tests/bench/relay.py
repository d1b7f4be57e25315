"""Relay benchmarks: forwarding cost against a batched bare forwarder, and memory per session.

Forwarding: the forwarder under test (the relay, or the simplest good forwarder: a
non-blocking socket with 4 MiB buffers that waits for readability once, drains up to
``READ_BATCH`` datagrams and sends them to a fixed receiver, runs of equal size in one call,
UDP GSO, as the relay does) runs in this process on
127.0.0.1; a load generator runs in a child process, on the other core, with plain blocking
sockets: it keeps ``WINDOW`` datagrams in flight from its sender socket, through the forwarder,
to its receiver socket, for ``ROUND`` seconds. The generator does the same work for both
forwarders (it seals every frame as a registered node does, and the bare forwarder ignores
that), so the ratio is what the relay's work (authenticate, look up, meter, re-seal) costs
against moving the datagram alone. The figure that counts is CPU per datagram: the CPU seconds
this process spent divided by the datagrams moved (a shared machine's other load changes the
rate much more than the CPU). Rounds alternate between the two; medians are printed.

Sessions: the same load spread over ``MANY_SESSIONS`` sessions between one pair of nodes (each
datagram on the next session in turn) against one session, rounds alternating: what the relay
pays per datagram for finding and metering its session among many.

Memory: one node asks the relay for 10,000 sessions to another; live memory (tracemalloc) grows
by what the relay keeps per session: its state in the core and its actor.
"""

from __future__ import annotations

import itertools
import multiprocessing
import multiprocessing.connection
import resource
import socket
import time
from statistics import median
from typing import Final

import attrs
import trio

from macula_nat.identity import NodeId, NodeKey
from macula_nat.net import Address, RealUdpStack
from macula_nat.net.endpoint import READ_BATCH
from macula_nat.net.real import SOCKET_BUFFER
from macula_nat.relay import RelayConfig, RelayNode, frames, open_relay
from macula_nat.relay.handshake import ClientHandshake
from macula_nat.relay.link import Link, Verdict

from .gso import send_runs
from .timing import Figure, LiveMemory

LOOPBACK: Final = "127.0.0.1"
ROUND: Final = 0.6
ROUNDS: Final = 8
WINDOW: Final = 64
SMALL: Final = 64
LARGE: Final = 1200
SESSIONS: Final = 10_000
MANY_SESSIONS: Final = 1_000
UNLIMITED: Final = 1e12
CONFIG: Final = RelayConfig(
    handshake_rate=UNLIMITED,
    handshake_burst=UNLIMITED,
    control_rate=UNLIMITED,
    control_burst=UNLIMITED,
    max_registrations=100_000,
)


# -- a node's side, with plain blocking sockets (also used in the load generator) ----------------


def _register(sock: socket.socket, relay: Address, key: NodeKey, relay_id: NodeId) -> Link:
    """Register ``key`` through ``sock`` (blocking); the node's link."""
    handshake = ClientHandshake(key, relay_id)
    sock.sendto(frames.encode(handshake.hello()), relay)
    challenge = frames.decode(sock.recv(2048))
    assert isinstance(challenge, frames.Challenge)
    register = handshake.on_challenge(challenge)
    assert register is not None
    sock.sendto(frames.encode(register), relay)
    registered = frames.decode(sock.recv(2048))
    assert isinstance(registered, frames.Registered)
    link = handshake.on_registered(registered)
    assert link is not None
    return link


def _receive_sealed(sock: socket.socket, link: Link) -> frames.SessionFrame:
    for _ in range(100):
        frame = link.open(sock.recv(65536))
        if not isinstance(frame, Verdict):
            return frame
    raise AssertionError("no authentic frame in 100 datagrams")


def _relayed_pair(
    sender: socket.socket, receiver: socket.socket, relay: Address, relay_id: NodeId
) -> tuple[Link, int]:
    """Register both sockets as fresh nodes and open a session between them."""
    a, b = NodeKey.generate(), NodeKey.generate()
    link_a = _register(sender, relay, a, relay_id)
    link_b = _register(receiver, relay, b, relay_id)
    sender.sendto(link_a.seal(frames.RelayRequest(1, b.node_id)), relay)
    accepted = _receive_sealed(sender, link_a)
    assert isinstance(accepted, frames.RelayAccepted), accepted
    notice = _receive_sealed(receiver, link_b)
    assert isinstance(notice, frames.RelayAccepted), notice
    receiver.sendto(link_b.seal(frames.SessionAck(accepted.session)), relay)
    return link_a, accepted.session


def _generate_load(
    forwarder: Address,
    relay_id: bytes | None,
    payload_size: int,
    duration: float,
    window: int,
    results: multiprocessing.connection.Connection,
    sessions: int = 1,
) -> None:
    """Child process: datagrams through ``forwarder``, ``window`` in flight, for ``duration``
    seconds, over ``sessions`` relay sessions in turn. Says "ready" once set up and starts when
    told; then sends back (datagrams received, payload bytes received, seconds)."""
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver,
    ):
        sender.bind((LOOPBACK, 0))
        receiver.bind((LOOPBACK, 0))
        sender.settimeout(2.0)
        receiver.settimeout(2.0)
        if relay_id is None:
            receiver.sendto(b"receiver", forwarder)  # the bare forwarder sends everything here
            link, session_ids = Link(1, bytes(32), bytes(32)), [1]
        elif sessions == 1:
            link, session = _relayed_pair(sender, receiver, forwarder, NodeId(relay_id))
            session_ids = [session]
        else:
            links = _register_two(sender, receiver, forwarder, NodeId(relay_id))
            session_ids = _open_sessions(sender, receiver, links, forwarder, sessions)
            link = links[0]
        receiver.settimeout(0.2)
        payload = bytes(payload_size)
        seal = link.seal_data
        turn = itertools.cycle(session_ids)
        results.send("ready")  # the set-up's cost is not the forwarding's
        results.recv()
        received = in_flight = 0
        start = time.perf_counter()
        deadline = start + duration
        while time.perf_counter() < deadline:
            while in_flight < window:
                sender.sendto(seal(next(turn), payload), forwarder)
                in_flight += 1
            try:
                receiver.recv(65536)
            except TimeoutError:
                in_flight = 0  # lost in flight: start the window over
                continue
            received += 1
            in_flight -= 1
        elapsed = time.perf_counter() - start
    results.send((received, received * payload_size, elapsed))


@attrs.frozen
class _Rates:
    wall: float
    """Datagrams a second."""
    cpu: float
    """Datagrams per CPU second of this process (the forwarder's)."""

    @property
    def cpu_per_datagram(self) -> float:
        """CPU seconds this process spent per datagram forwarded."""
        return 1 / self.cpu


def _median(rates: list[_Rates]) -> _Rates:
    return _Rates(median(r.wall for r in rates), median(r.cpu for r in rates))


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _load(
    forwarder: Address, relay_id: NodeId | None, payload_size: int, sessions: int = 1
) -> _Rates:
    """What the forwarder moved for the load generator, from the moment it was set up (its
    registrations and sessions opened, and given a moment to settle)."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    raw_id = None if relay_id is None else relay_id.raw
    process = context.Process(
        target=_generate_load,
        args=(forwarder, raw_id, payload_size, ROUND, WINDOW, theirs, sessions),
        daemon=True,
    )
    process.start()
    theirs.close()
    assert await trio.to_thread.run_sync(ours.recv) == "ready"
    await trio.sleep(0.2)  # session actors started, set-up traffic drained
    cpu = _cpu_seconds()
    ours.send("go")
    received, _, elapsed = await trio.to_thread.run_sync(ours.recv)
    cpu = _cpu_seconds() - cpu
    await trio.to_thread.run_sync(process.join)
    return _Rates(received / elapsed, received / cpu)


async def _batched_forwarder(
    sock: socket.socket, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """The simplest good forwarder: wait for readability once, drain up to ``READ_BATCH``
    datagrams with non-blocking reads, then send them on, runs of equal size in one call (UDP
    GSO), waiting only when the kernel says the send would block."""
    task_status.started()
    receiver = None
    while receiver is None:
        await trio.lowlevel.wait_readable(sock)
        try:
            _, receiver = sock.recvfrom(2048)
        except BlockingIOError:
            continue
    while True:
        await trio.lowlevel.wait_readable(sock)
        batch = []
        for _ in range(READ_BATCH):
            try:
                data, _ = sock.recvfrom(65536)
            except BlockingIOError:
                break
            batch.append(data)
        await send_runs(sock, batch, receiver)


async def _with_batched(payload_size: int) -> _Rates:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
        sock.setblocking(False)
        sock.bind((LOOPBACK, 0))
        async with trio.open_nursery() as nursery:
            await nursery.start(_batched_forwarder, sock)
            rate = await _load(sock.getsockname(), None, payload_size)
            nursery.cancel_scope.cancel()
    return rate


async def _with_relay(relay: RelayNode, payload_size: int) -> _Rates:
    return await _load(relay.address, relay.node_id, payload_size)


async def _forwarding(payload_size: int) -> tuple[_Rates, _Rates]:
    """Median rates of the relay and of the batched forwarder over ``ROUNDS`` alternating
    rounds."""
    relay = RelayNode(RealUdpStack([LOOPBACK]), (LOOPBACK, 0), NodeKey.generate(), CONFIG)
    ours: list[_Rates] = []
    batched: list[_Rates] = []
    async with open_relay(relay):
        await relay.enable(max_sessions=100, bandwidth_limit=UNLIMITED)
        for _ in range(ROUNDS):
            ours.append(await _with_relay(relay, payload_size))
            batched.append(await _with_batched(payload_size))
        assert relay.statistics().drops.total == 0, relay.statistics().drops
    ratios = [a.cpu_per_datagram / b.cpu_per_datagram for a, b in zip(ours, batched, strict=True)]
    print(
        f"relay: {payload_size} B, {ROUNDS} alternating rounds, medians below; rep-by-rep CPU per"
        f" datagram ratio {min(ratios):.2f}-{max(ratios):.2f}x",
        flush=True,
    )
    return _median(ours), _median(batched)


async def _sessions_scaling(payload_size: int) -> tuple[_Rates, _Rates]:
    """Median rates with the load spread over ``MANY_SESSIONS`` sessions and over one, over
    ``ROUNDS`` alternating rounds on one relay."""
    relay = RelayNode(RealUdpStack([LOOPBACK]), (LOOPBACK, 0), NodeKey.generate(), CONFIG)
    many: list[_Rates] = []
    one: list[_Rates] = []
    async with open_relay(relay):
        await relay.enable(
            max_sessions=2 * ROUNDS * MANY_SESSIONS,
            max_sessions_per_node=MANY_SESSIONS,
            bandwidth_limit=UNLIMITED,
        )
        for _ in range(ROUNDS):
            many.append(await _load(relay.address, relay.node_id, payload_size, MANY_SESSIONS))
            one.append(await _load(relay.address, relay.node_id, payload_size))
        assert relay.statistics().drops.total == 0, relay.statistics().drops
    return _median(many), _median(one)


async def _memory_per_session(n: int) -> tuple[float, float]:
    """Bytes of live memory per relayed session with ``n`` open, and sessions opened a second."""
    memory = LiveMemory()
    relay = RelayNode(RealUdpStack([LOOPBACK]), (LOOPBACK, 0), NodeKey.generate(), CONFIG)
    async with open_relay(relay):
        await relay.enable(max_sessions=n, max_sessions_per_node=n, idle_timeout=3600.0)
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b,
        ):
            a.bind((LOOPBACK, 0))
            b.bind((LOOPBACK, 0))
            a.settimeout(5.0)
            b.settimeout(5.0)
            links = await trio.to_thread.run_sync(_register_two, a, b, relay.address, relay.node_id)
            memory.start()
            started = time.perf_counter()
            await trio.to_thread.run_sync(_open_sessions, a, b, links, relay.address, n)
            await _wait_for_actors(relay, n)
            elapsed = time.perf_counter() - started
            live = memory.measure()
            memory.stop()
            assert relay.statistics().sessions == n
    return live / n, n / elapsed


def _register_two(
    a: socket.socket, b: socket.socket, relay: Address, relay_id: NodeId
) -> tuple[Link, Link, NodeId]:
    key_b = NodeKey.generate()
    return (
        _register(a, relay, NodeKey.generate(), relay_id),
        _register(b, relay, key_b, relay_id),
        key_b.node_id,
    )


def _open_sessions(
    a: socket.socket, b: socket.socket, links: tuple[Link, Link, NodeId], relay: Address, n: int
) -> list[int]:
    """``n`` sessions from a to b, requested in batches of 64; b acknowledges each notice.
    Returns the sessions' ids."""
    link_a, link_b, target = links
    opened: list[int] = []
    batch = 64
    for first in range(1, n + 1, batch):
        count = min(batch, n + 1 - first)
        for request in range(first, first + count):
            a.sendto(link_a.seal(frames.RelayRequest(request, target)), relay)
        for _ in range(count):
            accepted = _receive_sealed(a, link_a)
            assert isinstance(accepted, frames.RelayAccepted), accepted
            notice = _receive_sealed(b, link_b)
            assert isinstance(notice, frames.RelayAccepted), notice
            b.sendto(link_b.seal(frames.SessionAck(notice.session)), relay)
            opened.append(accepted.session)
    return opened


async def _wait_for_actors(relay: RelayNode, n: int) -> None:
    for _ in range(6000):
        if relay.statistics().session_actors >= n:
            return
        await trio.sleep(0.01)
    raise TimeoutError(f"{n} session actors did not start within a minute")


async def run() -> list[Figure]:
    small_relay, small_batched = await _forwarding(SMALL)
    large_relay, large_batched = await _forwarding(LARGE)
    many, one = await _sessions_scaling(LARGE)
    per_session, setup_rate = await _memory_per_session(SESSIONS)
    mb = LARGE / 1e6
    baseline = "batched forwarder"
    return [
        Figure(
            f"relay: {SMALL} B datagrams/s forwarded, vs {baseline}",
            small_relay.wall,
            "dgram/s",
            small_batched.wall,
        ),
        Figure(
            f"relay: {SMALL} B CPU per datagram, vs {baseline}",
            small_relay.cpu_per_datagram * 1e6,
            "us",
            small_batched.cpu_per_datagram * 1e6,
            "<= 1.5x",
        ),
        Figure(
            f"relay: {LARGE} B datagrams/s forwarded, vs {baseline}",
            large_relay.wall,
            "dgram/s",
            large_batched.wall,
        ),
        Figure(
            f"relay: {LARGE} B CPU per datagram, vs {baseline}",
            large_relay.cpu_per_datagram * 1e6,
            "us",
            large_batched.cpu_per_datagram * 1e6,
            "<= 1.5x",
        ),
        Figure(
            f"relay: MB/s of payload ({LARGE} B), vs {baseline}",
            large_relay.wall * mb,
            "MB/s",
            large_batched.wall * mb,
        ),
        Figure(
            f"relay: {LARGE} B CPU per datagram over {MANY_SESSIONS:,} sessions, vs one session",
            many.cpu_per_datagram * 1e6,
            "us",
            one.cpu_per_datagram * 1e6,
            "<= 1.1x",
        ),
        Figure(
            f"relay: {LARGE} B datagrams/s over {MANY_SESSIONS:,} sessions, vs one session",
            many.wall,
            "dgram/s",
            one.wall,
            ">= 0.9x",
        ),
        Figure(
            f"relay: memory per session ({SESSIONS:,} sessions, state and actor)",
            per_session / 1024,
            "KiB",
        ),
        Figure(
            f"relay: sessions opened a second ({SESSIONS:,}, tracemalloc on)", setup_rate, "sess/s"
        ),
    ]


if __name__ == "__main__":

    async def _main() -> None:
        for figure in await run():
            print(figure.render(), flush=True)

    trio.run(_main)
