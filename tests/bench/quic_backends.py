"""QUIC backends side by side (issue 14): our driver on qh3 against the same driver on aioquic,
in one process and in two, beside the minimal aioquic driver; and what a connection holds of
its peer's data under the heaviest load.

- **One process** (one ``trio.run``, both ends, 127.0.0.1): ``REPS`` alternating reps of
  :func:`tests.bench.connections._our_bulk` on each backend (32 MiB in 64 KiB messages, a
  fresh connection each); then 100 B round trips (the peer echoes from an application task)
  of both backends and the minimal aioquic driver, one connection each, in interleaved bursts
  (:mod:`tests.bench.bursts`). Goal: qh3 moves >= 5x the bytes and takes <= 0.6x the round
  trip of aioquic.
- **Two processes**: the server in a child process (``python -m tests.bench.quic_backends
  serve ...``, one connection each), the client here; for our driver on each backend and for
  the minimal aioquic driver (:class:`tests.bench.connections._MinimalEnd`). A bulk transfer
  (a fresh child each, ``REPS`` in alternation) ends when the server, having read every byte,
  says so (one small message back); the server's CPU per transfer is its
  ``time.process_time`` from serving to the end (the child's imports not counted). The round
  trips run on one child per driver, all open at once, in interleaved bursts.
- **Placement** (Linux, two CPUs or more): the two-process round trips again with the clients'
  thread and the servers pinned (``sched_setaffinity``) to one CPU, then each to its own. Which
  the kernel picks decides what the round trip pays: on one core the total work of both ends (a
  process runs only once the other blocks), on two the work from each wake-up to its send
  (the rest overlaps the peer's); unpinned, a run is a mix of both.
- **Memory**: the bulk transfer, the receiving application reading at full speed and then
  pausing for ``PAUSE`` mid-transfer, with the default config (a 64 MiB bound) and with a
  tight one (``TIGHT``: a 4 MiB bound, an eighth of the transfer); the most the receiver held of
  the peer's data (``statistics()``: unread plus reassembly), sampled every millisecond, beside
  the bound (``max_receive_buffer`` plus one message's framing). The same bound is asserted by
  ``tests/connection/test_memory.py`` (behaviour, not timing).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager, suppress
from statistics import median
from typing import Final

import attrs
import trio
from aioquic.quic.connection import QuicConnection

from macula_nat.connection import (
    Connection,
    ConnectionConfig,
    ConnectionFailed,
    connect,
    listen,
)
from macula_nat.connection.backend import BackendName
from macula_nat.identity import NodeId, NodeKey
from macula_nat.net import RealUdpStack

from .bursts import BURST, ROUNDS, Bursts, RoundTrip, interleave
from .connections import (
    BULK_MESSAGE,
    BULK_MESSAGES,
    LOOPBACK,
    SMALL,
    TRANSFER_TIMEOUT,
    _Bulk,
    _minimal_configuration,
    _minimal_round_trips,
    _minimal_socket,
    _MinimalEnd,
    _our_bulk,
    _our_pair,
    _our_round_trips,
)
from .timing import Figure, now

__all__ = ["run"]

REPS: Final = 5
BACKENDS: Final[tuple[BackendName, ...]] = ("aioquic", "qh3")
DRIVERS: Final = (*BACKENDS, "minimal")
TOTAL: Final = BULK_MESSAGE * BULK_MESSAGES
DONE: Final = b"done"
PLACEMENTS: Final = ("one core", "two cores")
"""The pinned runs of the two-process round trip (see the module's docstring)."""
PAUSE: Final = 0.5
"""Seconds the receiving application stops reading, mid-transfer, in the memory run."""
TIGHT: Final = 4 << 20
"""The memory run's tight bound (``max_receive_buffer``, messages of ``BULK_MESSAGE`` at
most): an eighth of the transfer."""


def _config(backend: BackendName) -> ConnectionConfig:
    return ConnectionConfig(quic_backend=backend)


# -- one process -------------------------------------------------------------------------------


async def _one_process() -> tuple[dict[BackendName, list[_Bulk]], Bursts]:
    """Bulk reps of our driver on each backend in alternation; then the round trips of both
    and of the minimal aioquic driver, in interleaved bursts."""
    reps: dict[BackendName, list[_Bulk]] = {name: [] for name in BACKENDS}
    for _ in range(REPS):
        for name in BACKENDS:
            reps[name].append(await _our_bulk(_config(name)))
    async with (
        _our_round_trips(_config("aioquic")) as aioquic,
        _our_round_trips(_config("qh3")) as qh3,
        _minimal_round_trips(inline=False) as minimal,
    ):
        with trio.fail_after(TRANSFER_TIMEOUT * 4):
            bursts = await interleave({"aioquic": aioquic, "qh3": qh3, "minimal": minimal})
    return reps, bursts


# -- two processes -----------------------------------------------------------------------------


@attrs.frozen
class _Transfer:
    seconds: float
    server_cpu: float


async def _serve_ours(backend: BackendName, mode: str, client: NodeId) -> float:
    """One connection's server side: echo (``rtt``) or read everything then say so (``bulk``);
    the CPU seconds it took (its imports before it not counted)."""
    started = time.process_time()
    stack = RealUdpStack([LOOPBACK])
    key = NodeKey.generate()
    endpoint = await stack.bind((LOOPBACK, 0))
    print(endpoint.local_address[1], key.node_id.text(), flush=True)
    async with listen(endpoint, key, [client], config=_config(backend)) as listener:
        connection = await listener.accept()
        with suppress(ConnectionFailed):  # the client closed: this server's one connection
            if mode == "rtt":
                while True:
                    await connection.send_message(await connection.receive_message())
            for _ in range(BULK_MESSAGES):
                await connection.receive_message()
            await connection.send_message(DONE)
            await connection.wait_closed()
    endpoint.close()
    return time.process_time() - started


async def _serve_minimal(mode: str) -> float:
    started = time.process_time()
    sock = _minimal_socket()
    print(sock.getsockname()[1], "-", flush=True)
    server = _MinimalEnd(sock, _minimal_configuration(is_client=False), keep=mode == "rtt")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.run)
        if mode == "rtt":
            nursery.start_soon(server.echo)
            await trio.sleep_forever()
        await server.wait_received(TOTAL)
        await server.send(server.stream_id, DONE)
        await trio.sleep(1.0)  # the client has its answer and closes this process
        nursery.cancel_scope.cancel()
    sock.close()
    return time.process_time() - started


def _backend(driver: str) -> BackendName:
    """The backend of one of our :data:`DRIVERS` (not ``minimal``)."""
    return "qh3" if driver == "qh3" else "aioquic"


def _serve(driver: str, mode: str, client: str) -> None:
    """The child's entry: serve one connection, print the CPU seconds it took."""
    if driver == "minimal":
        cpu = trio.run(_serve_minimal, mode)
    else:
        cpu = trio.run(_serve_ours, _backend(driver), mode, NodeId.from_text(client))
    print(f"cpu {cpu}", flush=True)


async def _bulk_send(connection: Connection) -> float:
    """Seconds to send the bulk transfer and hear that the server has read all of it."""
    bulk = bytes(BULK_MESSAGE)
    with trio.fail_after(TRANSFER_TIMEOUT):
        started = now()
        for _ in range(BULK_MESSAGES):
            await connection.send_message(bulk)
        await connection.receive_message()
        return now() - started


async def _bulk_client_minimal(port: int) -> float:
    bulk = bytes(BULK_MESSAGE)
    async with _minimal_client(port) as (client, stream):
        with trio.fail_after(TRANSFER_TIMEOUT):
            started = now()
            for _ in range(BULK_MESSAGES):
                await client.send(stream, bulk)
            await client.wait_received(len(DONE))
            return now() - started


@asynccontextmanager
async def _minimal_client(port: int) -> AsyncIterator[tuple[_MinimalEnd, int]]:
    """A minimal driver's connection to the server at ``port``, and its stream."""
    with _minimal_socket() as sock:
        client = _MinimalEnd(sock, _minimal_configuration(is_client=True))
        quic = client.quic = QuicConnection(configuration=client.configuration)
        quic.connect((LOOPBACK, port), now=trio.current_time())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.run)
            await client.transmit()
            with trio.fail_after(TRANSFER_TIMEOUT):
                await client.connected.wait()
            yield client, quic.get_next_available_stream_id()
            nursery.cancel_scope.cancel()


async def _line(stream: trio.abc.ReceiveStream, pending: bytearray) -> str:
    """The child's next line of output (``pending``: what was read past the last one)."""
    while b"\n" not in pending:
        chunk = await stream.receive_some()
        if not chunk:
            raise RuntimeError("the benchmark's server process ended early")
        pending += chunk
    line, _, rest = bytes(pending).partition(b"\n")
    pending[:] = rest
    return line.decode()


@attrs.frozen
class _Server:
    """A server child process of the benchmark, serving one connection."""

    process: trio.Process
    port: int
    node: str
    """Its node id (text), or ``-`` for the minimal driver."""
    pending: bytearray
    """Its output read past the last line."""


@asynccontextmanager
async def _server(driver: str, mode: str, key: NodeKey) -> AsyncIterator[_Server]:
    """A child process serving one connection of ``driver`` (``mode``: rtt or bulk) to the
    client of ``key``; ended when the block is left."""
    command = [sys.executable, "-m", "tests.bench.quic_backends", "serve", driver, mode]
    child = await trio.lowlevel.open_process([*command, key.node_id.text()], stdout=subprocess.PIPE)
    pending = bytearray()
    try:
        assert child.stdout is not None
        with trio.fail_after(TRANSFER_TIMEOUT):
            port, node = (await _line(child.stdout, pending)).split()
        yield _Server(child, int(port), node, pending)
    finally:
        with trio.CancelScope(shield=True):  # also when the run is cancelled: no child left
            if child.returncode is None:
                child.terminate()
            with trio.move_on_after(10):
                await child.wait()
            if child.returncode is None:
                child.kill()
                await child.wait()


@asynccontextmanager
async def _our_client(driver: str, server: _Server, key: NodeKey) -> AsyncIterator[Connection]:
    """Our driver's connection (``driver``'s backend) with ``key`` to the child ``server``."""
    endpoint = await RealUdpStack([LOOPBACK]).bind((LOOPBACK, 0))
    node = NodeId.from_text(server.node)
    try:
        async with connect(
            endpoint, (LOOPBACK, server.port), key, node, config=_config(_backend(driver))
        ) as connection:
            yield connection
    finally:
        endpoint.close()


async def _two_process_bulk(driver: str) -> _Transfer:
    """One bulk transfer to a fresh server child; the seconds, and the server's CPU seconds."""
    key = NodeKey.generate()
    async with _server(driver, "bulk", key) as server:
        if driver == "minimal":
            seconds = await _bulk_client_minimal(server.port)
        else:
            async with _our_client(driver, server, key) as connection:
                seconds = await _bulk_send(connection)
        assert server.process.stdout is not None
        with trio.fail_after(TRANSFER_TIMEOUT):
            cpu = float((await _line(server.process.stdout, server.pending)).split()[1])
    return _Transfer(seconds, cpu)


@asynccontextmanager
async def _round_trip_client(driver: str) -> AsyncIterator[tuple[RoundTrip, int]]:
    """A connection of ``driver`` to a server child echoing 100 B messages: one call of the
    round trip it yields is one round trip; and the child's process id."""
    key = NodeKey.generate()
    small = bytes(SMALL)
    async with _server(driver, "rtt", key) as server:
        if driver == "minimal":
            async with _minimal_client(server.port) as (client, stream):

                async def minimal_round_trip() -> None:
                    await client.round_trip(stream, small)

                yield minimal_round_trip, server.process.pid
            return
        async with _our_client(driver, server, key) as connection:

            async def round_trip() -> None:
                await connection.send_message(small)
                await connection.receive_message()

            yield round_trip, server.process.pid


def _cpus(placement: str | None) -> tuple[int, int] | None:
    """The client's and the server's CPU for ``placement`` (None: unpinned, or too few CPUs)."""
    if placement is None:
        return None
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None
    return (allowed[0], allowed[0]) if placement == "one core" else (allowed[0], allowed[1])


@contextmanager
def _placed(placement: str | None, servers: Sequence[int]) -> Iterator[None]:
    """Pin this thread (the clients' ``trio.run``) and the ``servers`` processes as
    ``placement`` says for the block (see :data:`PLACEMENTS`; None: where the kernel puts
    them), and give every one its CPUs back after."""
    cpus = _cpus(placement)
    if cpus is None:
        yield
        return
    unpinned = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpus[0]})
    for pid in servers:
        os.sched_setaffinity(pid, {cpus[1]})
    try:
        yield
    finally:
        os.sched_setaffinity(0, unpinned)
        for pid in servers:
            with suppress(ProcessLookupError):
                os.sched_setaffinity(pid, unpinned)


async def _two_process_round_trips() -> dict[str, Bursts]:
    """Each driver's round trips to its server child in interleaved bursts: where the kernel
    puts the processes (``rtt``), then in each of :data:`PLACEMENTS` (none without two CPUs)."""
    placements = [p for p in PLACEMENTS if _cpus(p) is not None]
    async with AsyncExitStack() as stack:
        round_trips: dict[str, RoundTrip] = {}
        servers = []
        for driver in DRIVERS:
            round_trip, pid = await stack.enter_async_context(_round_trip_client(driver))
            round_trips[driver] = round_trip
            servers.append(pid)
        bursts: dict[str, Bursts] = {}
        for placement in (None, *placements):
            with _placed(placement, servers), trio.fail_after(TRANSFER_TIMEOUT * 4):
                bursts[placement or "rtt"] = await interleave(round_trips)
    return bursts


async def _two_processes() -> tuple[dict[str, list[_Transfer]], dict[str, Bursts]]:
    """Each driver's bulk transfers (fresh processes, in alternation), and the round trips."""
    bulk: dict[str, list[_Transfer]] = {driver: [] for driver in DRIVERS}
    for _ in range(REPS):
        for driver in DRIVERS:
            bulk[driver].append(await _two_process_bulk(driver))
    return bulk, await _two_process_round_trips()


# -- memory ------------------------------------------------------------------------------------


async def _held_under_load(config: ConnectionConfig) -> tuple[int, int]:
    """The most the receiver held of the peer's data during a bulk transfer whose reader
    pauses mid-way, and its bound."""
    peak = 0
    bulk = bytes(BULK_MESSAGE)

    def held(connection: Connection) -> int:
        statistics = connection.statistics()
        return statistics.held + statistics.reassembly

    async with _our_pair(config) as (connection, receiver), trio.open_nursery() as nursery:

        async def sample() -> None:
            nonlocal peak
            while True:
                peak = max(peak, held(receiver))
                await trio.sleep(0.001)

        async def send() -> None:
            for _ in range(BULK_MESSAGES):
                await connection.send_message(bulk)

        nursery.start_soon(sample)
        nursery.start_soon(send)
        with trio.fail_after(TRANSFER_TIMEOUT):
            for n in range(BULK_MESSAGES):
                if n == BULK_MESSAGES // 4:
                    await trio.sleep(PAUSE)
                await receiver.receive_message()
                peak = max(peak, held(receiver))
        nursery.cancel_scope.cancel()
    return peak, config.receive_window


# -- figures -----------------------------------------------------------------------------------


def _ratio_range(values: Sequence[float], baselines: Sequence[float]) -> str:
    ratios = [v / b for v, b in zip(values, baselines, strict=True)]
    return f"{min(ratios):.2f}-{max(ratios):.2f}x"


def _figures(
    one: tuple[dict[BackendName, list[_Bulk]], Bursts],
    two: tuple[dict[str, list[_Transfer]], dict[str, Bursts]],
    memory: dict[tuple[BackendName, str], tuple[int, int]],
) -> list[Figure]:
    one_bulk, one_rtt = one
    two_bulk, two_rtt = two
    bulk = {name: [d.bytes_per_second for d in one_bulk[name]] for name in BACKENDS}
    rate = {driver: [TOTAL / t.seconds for t in two_bulk[driver]] for driver in DRIVERS}
    print(
        f"quic backends: bulk {REPS} alternating reps, medians below; rep-by-rep qh3/aioquic:"
        f" one process {_ratio_range(bulk['qh3'], bulk['aioquic'])}, two processes"
        f" {_ratio_range(rate['qh3'], rate['aioquic'])}. Round trips in {ROUNDS} interleaved"
        f" bursts of {BURST}, medians below; round by round: one process"
        f" {one_rtt.describe('qh3', 'aioquic')}, {one_rtt.describe('aioquic', 'minimal')}",
        flush=True,
    )
    for placement, bursts in two_rtt.items():
        where = "where the kernel puts them" if placement == "rtt" else f"on {placement}"
        print(
            f"  two processes {where}: {bursts.describe('qh3', 'aioquic')},"
            f" {bursts.describe('aioquic', 'minimal')}",
            flush=True,
        )
    size = f"{TOTAL >> 20} MiB in {BULK_MESSAGE >> 10} KiB messages"
    figures = [
        Figure(
            f"QUIC one process: {size}, qh3 vs aioquic backend",
            median(bulk["qh3"]) / 1e6,
            "MB/s",
            median(bulk["aioquic"]) / 1e6,
            ">= 5x",
        ),
        Figure(
            f"QUIC one process: {SMALL} B round trip, qh3 vs aioquic backend",
            one_rtt.median("qh3") * 1e6,
            "us",
            one_rtt.median("aioquic") * 1e6,
            "<= 0.6x",
        ),
        Figure(
            f"QUIC one process: {SMALL} B round trip, aioquic vs minimal aioquic driver",
            one_rtt.median("aioquic") * 1e6,
            "us",
            one_rtt.median("minimal") * 1e6,
            "<= 1.0x",
        ),
    ]

    def cpu(driver: str) -> float:
        return median(t.server_cpu / (TOTAL / 1e6) for t in two_bulk[driver]) * 1e6

    for name, baseline in (("qh3", "aioquic"), ("qh3", "minimal"), ("aioquic", "minimal")):
        label = "aioquic backend" if baseline == "aioquic" else "minimal aioquic driver"
        figures += [
            Figure(
                f"QUIC two processes: {size}, {name} vs {label}",
                median(rate[name]) / 1e6,
                "MB/s",
                median(rate[baseline]) / 1e6,
                ">= 5x" if baseline == "aioquic" else ">= 1.0x",
            ),
            Figure(
                f"QUIC two processes: {SMALL} B round trip, {name} vs {label}",
                two_rtt["rtt"].median(name) * 1e6,
                "us",
                two_rtt["rtt"].median(baseline) * 1e6,
                "<= 0.6x" if baseline == "aioquic" else "<= 1.0x",
            ),
        ]
    for placement in PLACEMENTS:
        if placement not in two_rtt:
            continue
        for name, baseline in (("qh3", "aioquic"), ("aioquic", "minimal")):
            label = "aioquic backend" if baseline == "aioquic" else "minimal aioquic driver"
            figures.append(
                Figure(
                    f"QUIC two processes on {placement}: {SMALL} B round trip, {name} vs {label}",
                    two_rtt[placement].median(name) * 1e6,
                    "us",
                    two_rtt[placement].median(baseline) * 1e6,
                    "<= 0.6x" if baseline == "aioquic" else "<= 1.0x",
                )
            )
    figures.append(
        Figure(
            "QUIC two processes: bulk receiver CPU, qh3 vs aioquic backend",
            cpu("qh3"),
            "us/MB",
            cpu("aioquic"),
            "(the receiving process, handshake to end)",
        )
    )
    for (name, which), (peak, bound) in memory.items():
        figures.append(
            Figure(
                f"QUIC {name}: most held of the peer, paused reader, {which} bound",
                peak / (1 << 20),
                "MiB",
                bound / (1 << 20),
                "<= 1.0x",
            )
        )
    return figures


async def run() -> list[Figure]:
    one = await _one_process()
    two = await _two_processes()
    memory: dict[tuple[BackendName, str], tuple[int, int]] = {}
    for name in BACKENDS:
        default = _config(name)
        memory[name, "default"] = await _held_under_load(default)
        memory[name, "4 MiB"] = await _held_under_load(
            attrs.evolve(default, max_receive_buffer=TIGHT, max_message_size=BULK_MESSAGE)
        )
    return _figures(one, two, memory)


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        _serve(*sys.argv[2:5])
    else:

        async def _main() -> None:
            for figure in await run():
                print(figure.render(), flush=True)

        trio.run(_main)
