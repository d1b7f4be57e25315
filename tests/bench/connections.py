"""Connection benchmarks: how often and how fast two nodes get a direct path (simulated internet),
and what our QUIC driver costs against a bare aioquic-over-Trio loop (real sockets, 127.0.0.1).

Simulated (in-process internet under a MockClock, in a thread of its own so its virtual time does
not touch the caller's clock; times are simulated, deterministic per seed, not the real-NAT lab):

- Direct share: every ordered pair of the field's NAT types (same-type pairs included), each in a
  fresh world (:func:`tests.traversal.world.open_world`), connects as ``make run`` does (hello
  both ways, then up to ``nat_demo.PUNCH_WAIT``, 10 simulated seconds, for both ends to leave
  the relay). The pair is direct when the connecting side's method ended ``direct`` or
  ``punched``.
  :func:`~macula_nat.demo.nat.weighted_direct_share` weighs *unordered* pairs, so each direction
  is one unordered matrix (``local <= remote``, then ``local >= remote`` in ``NAT_TYPES`` order)
  and the share is the mean of the two: both have the same total weight, so the mean weighs every
  ordered pair by ``share_local * share_remote``. Passing all 25 rows at once would count mixed
  pairs twice over.
- Connect to first byte, and to the first byte sent over the direct path (sent the moment the
  connecting side's method leaves the relay), for two port-restricted cones at a 20 ms round trip.
- Relay to direct while traffic flows: 500 messages, one every 5 ms from connect on; time until
  the connecting side is punched, and messages lost.

Real sockets: our driver on its aioquic backend (qh3's is measured in
:mod:`tests.bench.quic_backends`), both ends in this process (one ``trio.run``) on 127.0.0.1.
Bulk: 32 MiB in 64 KiB messages on a fresh connection per rep, timed until the receiver has them
all, ``REPS`` reps alternating between the drivers, medians printed with the rep-by-rep range of
the ratio. Round trips: 100-byte messages (the peer echoes) in interleaved bursts
(:mod:`tests.bench.bursts`) on one connection per driver, medians printed with the quartiles of
the ratio round by round. The baseline is the simplest good aioquic
driver on Trio (:class:`_MinimalEnd`): aioquic's ``QuicConnection`` on a non-blocking socket with 4
MiB buffers, waiting for readability once per batch and draining up to ``READ_BATCH`` datagrams,
one output step per batch, each datagram sent without a scheduler round; the same flow-control
windows as ours, and like ours it waits while more than ``send_buffer`` bytes are unacknowledged.
Its echo is an application task, as ours is: the ratio is the cost of our driver (authentication,
message framing, bounded memory, hygiene), not of having an application. A third driver in the
round trips, for reference, echoes inside the minimal receive loop itself (no application task at
all). The datagrams the kernel dropped at the bulk receiver's socket (``/proc/net/udp``) are
counted. So are the Python calls (cProfile) each driver makes per round trip: a cost that the
machine's load barely moves, unlike the time; and the scheduler's work per round trip (a Trio
instrument): task steps, and waits for I/O (one per scheduler round).
"""

from __future__ import annotations

import cProfile
import math
import pstats
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from statistics import median
from typing import Final

import attrs
import trio
import trio.testing
from aioquic._buffer import Buffer
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import pull_quic_header

from macula_nat.connection import Connection, ConnectionConfig, connect, listen, node_certificate
from macula_nat.connection.link import ConnectionMethod
from macula_nat.demo.nat import (
    PAIR_TIMEOUT,
    PairResult,
    _off_relay,
    connect_pair,
    node_name,
    weighted_direct_share,
)
from macula_nat.demo.world import World, open_world
from macula_nat.identity import NodeKey
from macula_nat.net import Address, RealUdpStack
from macula_nat.net.endpoint import READ_BATCH
from macula_nat.net.real import SOCKET_BUFFER
from macula_nat.net.sim import Preset
from macula_nat.system import NatSystem

from .bursts import BURST, ROUNDS, WARM_UP, Bursts, RoundTrip, interleave
from .gso import send_runs
from .timing import Figure, now

NAT_TYPES: Final = (
    Preset.FULL_CONE,
    Preset.RESTRICTED_CONE,
    Preset.PORT_RESTRICTED_CONE,
    Preset.SYMMETRIC_RANDOM,
    Preset.CGNAT_FULL_CONE,
)
"""The NAT types with a share in the field (``nat_demo.SHARES``)."""
TAILSCALE_DIRECT: Final = 90.0
"""Tailscale: over 90% of connections direct (ARCHITECTURE.md section 9)."""
DCUTR_DIRECT: Final = 70.0
"""libp2p DCUtR: 70% +- 7% over 4.4 M attempts."""
RTT: Final = 0.020
"""Between two simulated nodes: 5 ms each way on each access link (world.py's SITE_LINK)."""
DIRECT_GOAL: Final = 2 * RTT + 0.100
"""Direct within 2 RTT + 100 ms once profiles are known."""
ERLANG_PUNCH: Final = 0.200
"""The Erlang original's claimed punch coordination, 200-500 ms: its best case."""
STREAM_MESSAGES: Final = 500
STREAM_INTERVAL: Final = 0.005
STREAM_DRAIN: Final = 10.0
"""Simulated seconds after the last send for the rest of the stream to arrive."""

LOOPBACK: Final = "127.0.0.1"
REPS: Final = 5
BULK_MESSAGE: Final = 64 * 1024
BULK_MESSAGES: Final = 512
"""32 MiB in all."""
SMALL: Final = 100
COUNTED_TRIPS: Final = 500
"""Round trips whose Python calls and scheduler steps are counted (on a warm connection)."""
AIOQUIC: Final = ConnectionConfig(quic_backend="aioquic")
"""Our driver on the baseline's library."""
SEND_BUFFER: Final = ConnectionConfig().send_buffer
RECEIVE_WINDOW: Final = ConnectionConfig().receive_window
TRANSFER_TIMEOUT: Final = 30.0
ALPN: Final = "bench"


# -- simulated internet ----------------------------------------------------------------------


def _ms(seconds: float) -> float:
    return seconds * 1000


async def _nodes(world: World, local: Preset, remote: Preset) -> tuple[NatSystem, NatSystem]:
    return await world.node(local, "alice"), await world.node(remote, "bob")


async def _pair(local: Preset, remote: Preset, seed: int) -> PairResult:
    """``nat_demo.connect_pair`` in a fresh world (two nodes of one type are fine here)."""
    async with open_world(seed=seed) as world:
        alice, bob = await _nodes(world, local, remote)
        return await connect_pair(alice, bob, local, remote)


def _direct_share(rows: Sequence[PairResult]) -> float:
    """The weighted direct share over ordered pairs: the mean of the two directions' shares."""
    order = NAT_TYPES.index
    forward = [r for r in rows if order(r.local) <= order(r.remote)]
    backward = [r for r in rows if order(r.local) >= order(r.remote)]
    return (weighted_direct_share(forward) + weighted_direct_share(backward)) / 2


@attrs.frozen
class _Timeline:
    """Simulated seconds from the start of a connect."""

    first_byte: float
    punched: float
    first_direct_byte: float


async def _timeline(seed: int) -> _Timeline:
    """Two port-restricted cones: first byte, punched, and the first byte sent direct."""
    async with open_world(seed=seed) as world:
        alice, bob = await _nodes(world, Preset.PORT_RESTRICTED_CONE, Preset.PORT_RESTRICTED_CONE)
        with trio.fail_after(PAIR_TIMEOUT):
            started = trio.current_time()
            connection = await alice.connector.connect(bob.node_id)
            accepted = await bob.connector.accept()
            await connection.send_message(b"first")
            assert await accepted.receive_message() == b"first"
            first_byte = trio.current_time() - started
            await connection.method.wait_value(_off_relay)
            punched = trio.current_time() - started
            await connection.send_message(b"direct")
            assert await accepted.receive_message() == b"direct"
            first_direct_byte = trio.current_time() - started
            assert connection.method.value is ConnectionMethod.PUNCHED, connection.method.value
            link = accepted.link
            assert link is not None and link.statistics().received_direct > 0
            await connection.aclose()
            await accepted.aclose()
    return _Timeline(first_byte, punched, first_direct_byte)


@attrs.frozen
class _Upgrade:
    punched: float
    """Simulated seconds from the start of the connect until the connecting side punched."""
    sent: int
    received: int


async def _upgrade_under_traffic(seed: int) -> _Upgrade:
    """Two port-restricted cones; a message every ``STREAM_INTERVAL`` from connect on."""
    async with open_world(seed=seed) as world:
        alice, bob = await _nodes(world, Preset.PORT_RESTRICTED_CONE, Preset.PORT_RESTRICTED_CONE)
        sent = received = 0
        punched_at: list[float] = []
        with trio.fail_after(PAIR_TIMEOUT + STREAM_DRAIN):
            started = trio.current_time()
            connection = await alice.connector.connect(bob.node_id)
            accepted = await bob.connector.accept()

            async def send() -> None:
                nonlocal sent
                first = trio.current_time()
                for i in range(STREAM_MESSAGES):
                    await trio.sleep_until(first + i * STREAM_INTERVAL)
                    await connection.send_message(b"%d" % i)
                    sent += 1

            async def watch() -> None:
                await connection.method.wait_value(_off_relay)
                punched_at.append(trio.current_time() - started)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send)
                nursery.start_soon(watch)
                with trio.move_on_after(STREAM_MESSAGES * STREAM_INTERVAL + STREAM_DRAIN):
                    for i in range(STREAM_MESSAGES):
                        assert await accepted.receive_message() == b"%d" % i
                        received += 1
            assert connection.method.value is ConnectionMethod.PUNCHED, connection.method.value
            link = connection.link
            assert link is not None
            statistics = link.statistics()
            assert statistics.sent_relayed > 0 and statistics.sent_direct > 0, statistics
            await connection.aclose()
            await accepted.aclose()
    return _Upgrade(punched_at[0], sent, received)


@attrs.frozen
class _Simulated:
    rows: tuple[PairResult, ...]
    timeline: _Timeline
    upgrade: _Upgrade


async def _simulated() -> _Simulated:
    rows = []
    for seed, (local, remote) in enumerate((a, b) for a in NAT_TYPES for b in NAT_TYPES):
        rows.append(await _pair(local, remote, seed))
    timeline = await _timeline(seed=100)
    upgrade = await _upgrade_under_traffic(seed=101)
    return _Simulated(tuple(rows), timeline, upgrade)


def _simulated_in_own_run() -> _Simulated:
    return trio.run(_simulated, clock=trio.testing.MockClock(autojump_threshold=0))


def _simulated_figures(result: _Simulated) -> list[Figure]:
    rows, timeline, upgrade = result.rows, result.timeline, result.upgrade
    share = 100 * _direct_share(rows)
    ended = {m: sum(r.method is m for r in rows) for m in ConnectionMethod}
    relayed = ", ".join(
        f"{node_name(r.local)}->{node_name(r.remote)}" for r in rows if not r.direct
    )
    print(
        f"connections: {len(rows)} ordered NAT pairs on the simulated internet: "
        + ", ".join(f"{count} {method}" for method, count in ended.items())
        + (f" (relayed: {relayed})" if relayed else ""),
        flush=True,
    )
    print(
        "connections: 'sim ms' figures are simulated time (in-process internet, 20 ms RTT between"
        " nodes, 40 ms via the relay), not the real-NAT lab",
        flush=True,
    )
    return [
        Figure(
            "direct share of 25 NAT pairs (type-weighted), vs Tailscale",
            share,
            "%",
            TAILSCALE_DIRECT,
            ">= 95%",
        ),
        Figure(
            "direct share of 25 NAT pairs (type-weighted), vs DCUtR",
            share,
            "%",
            DCUTR_DIRECT,
            ">= 95%",
        ),
        Figure(
            "sim, port-restricted: connect to first byte, vs goal",
            _ms(timeline.first_byte),
            "sim ms",
            _ms(DIRECT_GOAL),
            "< 1x (relayed bytes flow before direct is due)",
        ),
        Figure(
            "sim, port-restricted: connect to direct byte, vs goal",
            _ms(timeline.first_direct_byte),
            "sim ms",
            _ms(DIRECT_GOAL),
            "<= 1x (direct within 2 RTT + 100 ms = 140 ms)",
        ),
        Figure(
            "sim, port-restricted: connect to direct byte, vs Erlang",
            _ms(timeline.first_direct_byte),
            "sim ms",
            _ms(ERLANG_PUNCH),
            "< 1x (Erlang claims 200-500 ms punch coordination)",
        ),
        Figure(
            f"sim, relay->direct, {STREAM_MESSAGES} msgs 1/5 ms: to punched, vs idle",
            _ms(upgrade.punched),
            "sim ms",
            _ms(timeline.punched),
            "about 1x (traffic does not delay the punch)",
        ),
        Figure(
            f"sim, relay->direct, {STREAM_MESSAGES} msgs 1/5 ms: lost of {upgrade.sent} sent",
            upgrade.sent - upgrade.received,
            "msgs",
            goal="0",
        ),
    ]


# -- real sockets: our driver and a minimal aioquic driver ---------------------------------------


@attrs.frozen
class _Bulk:
    bytes_per_second: float
    drops: int | None
    """Datagrams the receiving socket dropped during the transfer (None: not on Linux)."""


def _udp_drops(port: int) -> int | None:
    """The kernel's drop count of the IPv4 UDP socket bound to ``port`` (``/proc/net/udp``'s
    last column: datagrams that found its receive buffer full), or None where there is none."""
    try:
        lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port:
            return int(fields[-1])
    return None


def _drops_since(port: int, before: int | None) -> int | None:
    after = _udp_drops(port)
    return None if before is None or after is None else after - before


async def _echo(connection: Connection) -> None:
    while True:
        await connection.send_message(await connection.receive_message())


@asynccontextmanager
async def _our_pair(config: ConnectionConfig) -> AsyncIterator[tuple[Connection, Connection]]:
    """A connection of our driver (``config``'s backend) on 127.0.0.1: the client's side and
    the side the server accepted."""
    stack = RealUdpStack([LOOPBACK])
    client_key, server_key = NodeKey.generate(), NodeKey.generate()
    client_endpoint = await stack.bind((LOOPBACK, 0))
    server_endpoint = await stack.bind((LOOPBACK, 0))
    try:
        async with (
            listen(server_endpoint, server_key, [client_key.node_id], config=config) as listener,
            connect(
                client_endpoint,
                server_endpoint.local_address,
                client_key,
                server_key.node_id,
                config=config,
            ) as connection,
        ):
            yield connection, await listener.accept()
    finally:
        client_endpoint.close()
        server_endpoint.close()


async def _our_bulk(config: ConnectionConfig) -> _Bulk:
    """32 MiB on a fresh connection of our driver, timed until the receiver has read every
    message."""
    bulk = bytes(BULK_MESSAGE)
    async with _our_pair(config) as (connection, accepted):
        server_port = accepted.info().local_address[1]
        with trio.fail_after(TRANSFER_TIMEOUT):
            drops = _udp_drops(server_port)
            started = now()
            async with trio.open_nursery() as nursery:

                async def send() -> None:
                    for _ in range(BULK_MESSAGES):
                        await connection.send_message(bulk)

                nursery.start_soon(send)
                for _ in range(BULK_MESSAGES):
                    await accepted.receive_message()
            elapsed = now() - started
            drops = _drops_since(server_port, drops)
    return _Bulk(BULK_MESSAGE * BULK_MESSAGES / elapsed, drops)


@asynccontextmanager
async def _our_round_trips(config: ConnectionConfig) -> AsyncIterator[RoundTrip]:
    """A connection of our driver, the peer echoing from an application task: one call of
    what it yields is one 100 B round trip."""
    small = bytes(SMALL)
    async with _our_pair(config) as (connection, accepted), trio.open_nursery() as nursery:
        nursery.start_soon(_echo, accepted)

        async def round_trip() -> None:
            await connection.send_message(small)
            await connection.receive_message()

        yield round_trip
        nursery.cancel_scope.cancel()


@attrs.define(eq=False)
class _MinimalEnd:
    """One side of the simplest good aioquic driver on Trio: a non-blocking socket with 4 MiB
    buffers, read by waiting for readability once and draining up to ``READ_BATCH`` datagrams,
    one aioquic output step per batch, datagrams sent without a scheduler round (waiting for
    writability only when the kernel says the send would block)."""

    sock: socket.socket
    configuration: QuicConfiguration
    quic: QuicConnection | None = None
    """The client's from the start; the server's is made by the first datagram."""
    inline_echo: bool = False
    """Echo stream data from the receive loop (else :meth:`echo`, an application task)."""
    received: int = 0
    unread: bytearray = attrs.Factory(bytearray)
    """Stream data not yet taken by :meth:`echo` (kept only when ``keep`` is set)."""
    keep: bool = False
    stream_id: int = 0
    connected: trio.Event = attrs.Factory(trio.Event)
    _progress: trio.Event = attrs.Factory(trio.Event)

    async def run(self) -> None:
        """Feed each batch of datagrams and each due timer to aioquic, handle its events, send
        its datagrams."""
        sock = self.sock
        while True:
            timer = None if self.quic is None else self.quic.get_timer()
            with trio.move_on_at(math.inf if timer is None else timer):
                await trio.lowlevel.wait_readable(sock)
            now_ = trio.current_time()
            for _ in range(READ_BATCH):
                try:
                    data, address = sock.recvfrom(65536)
                except BlockingIOError:
                    break
                if self.quic is None:
                    header = pull_quic_header(Buffer(data=data), host_cid_length=8)
                    self.quic = QuicConnection(
                        configuration=self.configuration,
                        original_destination_connection_id=header.destination_cid,
                    )
                self.quic.receive_datagram(data, address, now=now_)
            quic = self.quic
            if quic is None:
                continue
            timer = quic.get_timer()
            if timer is not None and now_ >= timer:
                quic.handle_timer(now_)
            while (event := quic.next_event()) is not None:
                if isinstance(event, events.HandshakeCompleted):
                    self.connected.set()
                elif isinstance(event, events.StreamDataReceived):
                    self.received += len(event.data)
                    self.stream_id = event.stream_id
                    if self.inline_echo:
                        quic.send_stream_data(event.stream_id, event.data)
                    elif self.keep:
                        self.unread += event.data
            await self.transmit()
            self._progress.set()
            self._progress = trio.Event()

    async def transmit(self) -> None:
        assert self.quic is not None
        pending = self.quic.datagrams_to_send(now=trio.current_time())
        if pending:  # one peer: every datagram goes to the same address
            await send_runs(self.sock, [data for data, _ in pending], pending[0][1])

    async def send(self, stream_id: int, data: bytes) -> None:
        """Send on ``stream_id``; wait while more than ``SEND_BUFFER`` bytes are unacknowledged."""
        assert self.quic is not None
        self.quic.send_stream_data(stream_id, data)
        await self.transmit()
        while len(self.quic._streams[stream_id].sender._buffer) > SEND_BUFFER:
            await self._progress.wait()
        await trio.lowlevel.checkpoint()

    async def round_trip(self, stream_id: int, data: bytes) -> None:
        """Send ``data`` and wait for as many bytes to come back (the echo may be in before
        :meth:`send` returns)."""
        total = self.received + len(data)
        await self.send(stream_id, data)
        await self.wait_received(total)

    async def wait_received(self, total: int) -> None:
        while self.received < total:
            await self._progress.wait()

    async def echo(self) -> None:
        """The application: send back what arrives, as it arrives."""
        while True:
            while not self.unread:
                await self._progress.wait()
            data = bytes(self.unread)
            self.unread.clear()
            await self.send(self.stream_id, data)


def _minimal_configuration(is_client: bool) -> QuicConfiguration:
    """aioquic's configuration with our driver's flow-control windows (the same job)."""
    configuration = QuicConfiguration(
        is_client=is_client,
        alpn_protocols=[ALPN],
        verify_mode=ssl.CERT_NONE,
        max_data=RECEIVE_WINDOW,
        max_stream_data=RECEIVE_WINDOW,
    )
    if not is_client:
        key = NodeKey.generate()
        configuration.certificate = node_certificate(key)
        configuration.private_key = key.private_key
    return configuration


def _minimal_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
    sock.setblocking(False)
    sock.bind((LOOPBACK, 0))
    return sock


@asynccontextmanager
async def _minimal_connection(
    *, echo: bool, inline: bool = False
) -> AsyncIterator[tuple[_MinimalEnd, _MinimalEnd, int]]:
    """A connected client and server on two fresh sockets, and the client's stream; the server
    echoes from an application task, or ``inline`` in its receive loop."""
    with _minimal_socket() as client_sock, _minimal_socket() as server_sock:
        server_address: Address = server_sock.getsockname()
        client = _MinimalEnd(client_sock, _minimal_configuration(is_client=True))
        server = _MinimalEnd(
            server_sock,
            _minimal_configuration(is_client=False),
            inline_echo=echo and inline,
            keep=echo and not inline,
        )
        client.quic = QuicConnection(configuration=client.configuration)
        client.quic.connect(server_address, now=trio.current_time())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.run)
            nursery.start_soon(client.run)
            if server.keep:
                nursery.start_soon(server.echo)
            await client.transmit()
            with trio.fail_after(TRANSFER_TIMEOUT):
                await client.connected.wait()
            yield client, server, client.quic.get_next_available_stream_id()
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def _minimal_round_trips(*, inline: bool) -> AsyncIterator[RoundTrip]:
    """A minimal driver's connection, the server echoing from a task or ``inline``: one call
    of what it yields is one 100 B round trip."""
    small = bytes(SMALL)
    async with _minimal_connection(echo=True, inline=inline) as (client, _, stream):

        async def round_trip() -> None:
            await client.round_trip(stream, small)

        yield round_trip


async def _minimal_bulk() -> _Bulk:
    bulk = bytes(BULK_MESSAGE)
    async with _minimal_connection(echo=False) as (client, server, stream):
        server_port = server.sock.getsockname()[1]
        with trio.fail_after(TRANSFER_TIMEOUT):
            drops = _udp_drops(server_port)
            started = now()
            async with trio.open_nursery() as nursery:

                async def send() -> None:
                    for _ in range(BULK_MESSAGES):
                        await client.send(stream, bulk)

                nursery.start_soon(send)
                await server.wait_received(BULK_MESSAGE * BULK_MESSAGES)
            elapsed = now() - started
            drops = _drops_since(server_port, drops)
    return _Bulk(BULK_MESSAGE * BULK_MESSAGES / elapsed, drops)


RoundTrips = Callable[[], AbstractAsyncContextManager[RoundTrip]]
"""Opens a connection whose round trips are counted (:func:`_our_round_trips`, ...)."""


async def _calls_per_round_trip(open_round_trips: RoundTrips) -> float:
    """Python function calls (cProfile's count, C functions included) per round trip, over
    ``COUNTED_TRIPS`` on a warm connection. Unlike time, it barely moves with the machine's
    load, so it shows where a driver's cost per message goes."""
    async with open_round_trips() as round_trip:
        for _ in range(WARM_UP):
            await round_trip()
        profile = cProfile.Profile()
        profile.enable()
        try:
            for _ in range(COUNTED_TRIPS):
                await round_trip()
        finally:
            profile.disable()
    return int(pstats.Stats(profile).total_calls) / COUNTED_TRIPS  # type: ignore[attr-defined]


class _SchedulerCount(trio.abc.Instrument):
    """Task steps and I/O waits (one per scheduler round) while installed."""

    def __init__(self) -> None:
        self.steps = 0
        self.io_waits = 0

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps += 1

    def before_io_wait(self, timeout: float) -> None:
        self.io_waits += 1


async def _scheduler_per_round_trip(open_round_trips: RoundTrips) -> tuple[float, float]:
    """Task steps and I/O waits per round trip, counted as :func:`_calls_per_round_trip`
    counts calls."""
    count = _SchedulerCount()
    async with open_round_trips() as round_trip:
        for _ in range(WARM_UP):
            await round_trip()
        trio.lowlevel.add_instrument(count)
        try:
            for _ in range(COUNTED_TRIPS):
                await round_trip()
        finally:
            trio.lowlevel.remove_instrument(count)
    return count.steps / COUNTED_TRIPS, count.io_waits / COUNTED_TRIPS


def _ours_on_aioquic() -> AbstractAsyncContextManager[RoundTrip]:
    return _our_round_trips(AIOQUIC)


def _minimal_with_task() -> AbstractAsyncContextManager[RoundTrip]:
    return _minimal_round_trips(inline=False)


@attrs.frozen
class _Reps:
    """Our driver against the minimal one: bulk reps taken in alternation, round trips in
    interleaved bursts, and the counts per round trip."""

    ours: tuple[_Bulk, ...]
    minimal: tuple[_Bulk, ...]
    round_trips: Bursts
    """``ours``, ``minimal`` (echo task) and ``inline`` (echo in the receive loop)."""
    calls: tuple[float, float]
    """Python calls per round trip: ours, the minimal driver's (echo task)."""
    scheduler: tuple[tuple[float, float], tuple[float, float]]
    """Task steps and I/O waits per round trip: ours, the minimal driver's."""

    def bulk_ratios(self) -> tuple[float, float]:
        """The lowest and highest rep-by-rep bulk ratio of ours to the minimal driver."""
        ratios = [
            a.bytes_per_second / b.bytes_per_second
            for a, b in zip(self.ours, self.minimal, strict=True)
        ]
        return min(ratios), max(ratios)


async def _drivers() -> _Reps:
    """``REPS`` bulk transfers of our driver and the minimal one in alternation (a noisy
    neighbour then costs each about the same); the round trips of ours, the minimal one and
    the minimal one echoing inline, in interleaved bursts on one connection each."""
    ours: list[_Bulk] = []
    minimal: list[_Bulk] = []
    for _ in range(REPS):
        ours.append(await _our_bulk(AIOQUIC))
        minimal.append(await _minimal_bulk())
    async with (
        _ours_on_aioquic() as our_round_trip,
        _minimal_with_task() as minimal_round_trip,
        _minimal_round_trips(inline=True) as inline_round_trip,
    ):
        with trio.fail_after(TRANSFER_TIMEOUT * 4):
            bursts = await interleave(
                {
                    "ours": our_round_trip,
                    "minimal": minimal_round_trip,
                    "inline": inline_round_trip,
                }
            )
    calls = (
        await _calls_per_round_trip(_ours_on_aioquic),
        await _calls_per_round_trip(_minimal_with_task),
    )
    scheduler = (
        await _scheduler_per_round_trip(_ours_on_aioquic),
        await _scheduler_per_round_trip(_minimal_with_task),
    )
    return _Reps(tuple(ours), tuple(minimal), bursts, calls, scheduler)


def _driver_figures(reps: _Reps) -> list[Figure]:
    low_bulk, high_bulk = reps.bulk_ratios()
    bursts = reps.round_trips
    our_drops = [d.drops for d in reps.ours]
    their_drops = [d.drops for d in reps.minimal]
    print(
        f"connections: {REPS} alternating bulk reps on 127.0.0.1, medians below, rep-by-rep"
        f" {low_bulk:.2f}-{high_bulk:.2f}x; round trips in {ROUNDS} interleaved bursts of"
        f" {BURST}, medians below, round by round {bursts.describe('ours', 'minimal')},"
        f" {bursts.describe('ours', 'inline')};"
        f" datagrams dropped at the bulk receiver's socket per rep: ours {our_drops},"
        f" minimal {their_drops}",
        flush=True,
    )
    drops = [d for d in our_drops if d is not None]
    figures = [
        Figure(
            f"QUIC 127.0.0.1: {BULK_MESSAGES * BULK_MESSAGE >> 20} MiB in {BULK_MESSAGE >> 10} KiB"
            " messages, vs minimal aioquic driver",
            median(bulk.bytes_per_second for bulk in reps.ours) / 1e6,
            "MB/s",
            median(bulk.bytes_per_second for bulk in reps.minimal) / 1e6,
            ">= 1.0x",
        ),
        Figure(
            f"QUIC 127.0.0.1: {SMALL} B message round trip, vs minimal aioquic driver",
            bursts.median("ours") * 1e6,
            "us",
            bursts.median("minimal") * 1e6,
            "<= 1.0x",
        ),
        Figure(
            f"QUIC 127.0.0.1: Python calls per {SMALL} B round trip, vs minimal driver",
            reps.calls[0],
            "calls",
            reps.calls[1],
            "<= 1.0x (cProfile's count: steady where time is not)",
        ),
        Figure(
            f"QUIC 127.0.0.1: Trio task steps per {SMALL} B round trip, vs minimal driver",
            reps.scheduler[0][0],
            "steps",
            reps.scheduler[1][0],
            "<= 1.0x (each a scheduler hand-over)",
        ),
        Figure(
            f"QUIC 127.0.0.1: Trio I/O waits per {SMALL} B round trip, vs minimal driver",
            reps.scheduler[0][1],
            "waits",
            reps.scheduler[1][1],
            "(one per scheduler round)",
        ),
        Figure(
            f"QUIC 127.0.0.1: {SMALL} B round trip, vs minimal echoing in its loop",
            bursts.median("ours") * 1e6,
            "us",
            bursts.median("inline") * 1e6,
            "reference: no application task",
        ),
    ]
    if drops:
        figures.append(
            Figure(
                "QUIC 127.0.0.1: datagrams dropped at our bulk receiver, most in a rep",
                max(drops),
                "dgrams",
                goal="0",
            )
        )
    return figures


async def run() -> list[Figure]:
    simulated = await trio.to_thread.run_sync(_simulated_in_own_run)
    figures = _simulated_figures(simulated)
    figures += _driver_figures(await _drivers())
    return figures


if __name__ == "__main__":

    async def _main() -> None:
        for figure in await run():
            print(figure.render(), flush=True)

    trio.run(_main)
