"""QUIC backends side by side (issue 14): our driver on qh3 against the same driver on aioquic,
in one process and in two, beside the minimal aioquic driver; and what a connection holds of
its peer's data under the heaviest load.

- **One process** (one ``trio.run``, both ends, 127.0.0.1): ``REPS`` alternating reps of
  :func:`tests.bench.connections._ours` on each backend: 32 MiB in 64 KiB messages, and 500
  sequential 100 B round trips (the peer echoes from an application task). Goal: qh3 moves
  >= 5x the bytes and takes <= 0.6x the round trip of aioquic.
- **Two processes**: the server in a child process (``python -m tests.bench.quic_backends
  serve ...``, one connection each), the client here; the same transfers, for our driver on
  each backend and for the minimal aioquic driver (:class:`tests.bench.connections._MinimalEnd`).
  A bulk transfer ends when the server, having read every byte, says so (one small message
  back). The server's CPU per transfer is its ``time.process_time`` from serving to the end
  (the child's imports not counted).
- **Placement** (Linux, two CPUs or more): the two-process round trip again with the client
  and the server pinned (``sched_setaffinity``) to one CPU, then each to its own. Which the
  kernel picks decides what the round trip pays: on one core the total work of both ends (a
  process runs only once the other blocks), on two the work from each wake-up to its send
  (the rest overlaps the peer's); unpinned, a run is a mix of both and moves with it.
- **Memory**: the bulk transfer, the receiving application reading at full speed and then
  pausing for ``PAUSE`` mid-transfer, with the default config (a 64 MiB bound) and with a
  tight one (``TIGHT``: a 4 MiB bound, an eighth of the transfer); the most the receiver held of
  the peer's data (``statistics()``: unread plus reassembly), sampled every millisecond, beside
  the bound (``max_receive_buffer`` plus one message's framing). The same bound is asserted by
  ``tests/connection/test_memory.py`` (behaviour, not timing).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import suppress
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

from .connections import (
    BULK_MESSAGE,
    BULK_MESSAGES,
    LOOPBACK,
    ROUND_TRIPS,
    SMALL,
    TRANSFER_TIMEOUT,
    WARM_UP,
    _Driven,
    _minimal_configuration,
    _minimal_socket,
    _MinimalEnd,
    _ours,
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


async def _one_process() -> dict[BackendName, list[_Driven]]:
    reps: dict[BackendName, list[_Driven]] = {name: [] for name in BACKENDS}
    for _ in range(REPS):
        for name in BACKENDS:
            reps[name].append(await _ours(_config(name)))
    return reps


# -- two processes -----------------------------------------------------------------------------


@attrs.frozen
class _Transfer:
    seconds: float
    server_cpu: float
    server_cpus: frozenset[int]
    """The CPUs the server process was allowed to run on (its placement)."""


def _allowed_cpus() -> str:
    """This process's CPUs as the child prints them on its first line."""
    return ",".join(str(cpu) for cpu in sorted(os.sched_getaffinity(0)))


async def _serve_ours(backend: BackendName, mode: str, client: NodeId) -> float:
    """One connection's server side: echo (``rtt``) or read everything then say so (``bulk``);
    the CPU seconds it took (its imports before it not counted)."""
    started = time.process_time()
    stack = RealUdpStack([LOOPBACK])
    key = NodeKey.generate()
    endpoint = await stack.bind((LOOPBACK, 0))
    print(endpoint.local_address[1], key.node_id.text(), _allowed_cpus(), flush=True)
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
    print(sock.getsockname()[1], "-", _allowed_cpus(), flush=True)
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


def _serve(driver: str, mode: str, client: str, pin: str = "-") -> None:
    """The child's entry: serve one connection (on CPU ``pin`` alone unless ``-``), print the
    CPU seconds it took."""
    if pin != "-":
        os.sched_setaffinity(0, {int(pin)})
    if driver == "minimal":
        cpu = trio.run(_serve_minimal, mode)
    else:
        backend: BackendName = "qh3" if driver == "qh3" else "aioquic"
        cpu = trio.run(_serve_ours, backend, mode, NodeId.from_text(client))
    print(f"cpu {cpu}", flush=True)


async def _client_ours(
    backend: BackendName, mode: str, port: int, server: NodeId, key: NodeKey
) -> float:
    stack = RealUdpStack([LOOPBACK])
    endpoint = await stack.bind((LOOPBACK, 0))
    small, bulk = bytes(SMALL), bytes(BULK_MESSAGE)
    try:
        async with connect(endpoint, (LOOPBACK, port), key, server, config=_config(backend)) as c:
            with trio.fail_after(TRANSFER_TIMEOUT):
                if mode == "rtt":
                    for _ in range(WARM_UP):
                        await c.send_message(small)
                        await c.receive_message()
                    started = now()
                    for _ in range(ROUND_TRIPS):
                        await c.send_message(small)
                        await c.receive_message()
                    return (now() - started) / ROUND_TRIPS
                started = now()
                for _ in range(BULK_MESSAGES):
                    await c.send_message(bulk)
                await c.receive_message()
                return now() - started
    finally:
        endpoint.close()


async def _client_minimal(mode: str, port: int) -> float:
    with _minimal_socket() as sock:
        client = _MinimalEnd(sock, _minimal_configuration(is_client=True))
        quic = client.quic = QuicConnection(configuration=client.configuration)
        quic.connect((LOOPBACK, port), now=trio.current_time())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.run)
            await client.transmit()
            with trio.fail_after(TRANSFER_TIMEOUT):
                await client.connected.wait()
                stream = quic.get_next_available_stream_id()
                if mode == "rtt":
                    for _ in range(WARM_UP):
                        await client.round_trip(stream, bytes(SMALL))
                    started = now()
                    for _ in range(ROUND_TRIPS):
                        await client.round_trip(stream, bytes(SMALL))
                    result = (now() - started) / ROUND_TRIPS
                else:
                    started = now()
                    bulk = bytes(BULK_MESSAGE)
                    for _ in range(BULK_MESSAGES):
                        await client.send(stream, bulk)
                    await client.wait_received(len(DONE))
                    result = now() - started
            nursery.cancel_scope.cancel()
    return result


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


def _cpus(placement: str | None) -> tuple[int, int] | None:
    """The client's and the server's CPU for ``placement`` (None: unpinned, or too few CPUs)."""
    if placement is None:
        return None
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None
    return (allowed[0], allowed[0]) if placement == "one core" else (allowed[0], allowed[1])


async def _two_process(driver: str, mode: str, placement: str | None = None) -> _Transfer:
    """One transfer with the server in a child process, both pinned as ``placement`` says
    (see :data:`PLACEMENTS`; None: where the kernel puts them)."""
    key = NodeKey.generate()
    cpus = _cpus(placement)
    server_cpu = "-" if cpus is None else str(cpus[1])
    command = [sys.executable, "-m", "tests.bench.quic_backends", "serve", driver, mode]
    command += [key.node_id.text(), server_cpu]
    unpinned = os.sched_getaffinity(0)
    child = await trio.lowlevel.open_process(command, stdout=subprocess.PIPE)
    pending = bytearray()
    try:
        if cpus is not None:
            os.sched_setaffinity(0, {cpus[0]})  # this thread: the client's trio.run
        assert child.stdout is not None
        with trio.fail_after(TRANSFER_TIMEOUT):
            port_text, server_text, cpus_text = (await _line(child.stdout, pending)).split()
        port = int(port_text)
        if driver == "minimal":
            seconds = await _client_minimal(mode, port)
        else:
            backend: BackendName = "qh3" if driver == "qh3" else "aioquic"
            server = NodeId.from_text(server_text)
            seconds = await _client_ours(backend, mode, port, server, key)
        cpu = math.nan
        if mode == "bulk":
            with trio.fail_after(TRANSFER_TIMEOUT):
                cpu = float((await _line(child.stdout, pending)).split()[1])
    finally:
        if cpus is not None:
            os.sched_setaffinity(0, unpinned)
        if child.returncode is None:
            child.terminate()
        with trio.move_on_after(10):
            await child.wait()
    return _Transfer(seconds, cpu, frozenset(int(c) for c in cpus_text.split(",")))


async def _two_processes() -> dict[str, dict[str, list[_Transfer]]]:
    """Each driver's transfers, by mode: ``bulk`` and ``rtt`` where the kernel puts the two
    processes, then the round trip in each of :data:`PLACEMENTS` (none without two CPUs)."""
    placements = [p for p in PLACEMENTS if _cpus(p) is not None]
    reps: dict[str, dict[str, list[_Transfer]]] = {
        driver: {mode: [] for mode in ("bulk", "rtt", *placements)} for driver in DRIVERS
    }
    for _ in range(REPS):
        for driver in DRIVERS:
            for mode in ("bulk", "rtt"):
                reps[driver][mode].append(await _two_process(driver, mode))
    for placement in placements:
        for rep in range(REPS):  # alternating order: neither driver always runs first
            for driver in DRIVERS if rep % 2 == 0 else DRIVERS[::-1]:
                reps[driver][placement].append(await _two_process(driver, "rtt", placement))
    return reps


# -- memory ------------------------------------------------------------------------------------


async def _held_under_load(config: ConnectionConfig) -> tuple[int, int]:
    """The most the receiver held of the peer's data during a bulk transfer whose reader
    pauses mid-way, and its bound."""
    stack = RealUdpStack([LOOPBACK])
    client_key, server_key = NodeKey.generate(), NodeKey.generate()
    client_endpoint = await stack.bind((LOOPBACK, 0))
    server_endpoint = await stack.bind((LOOPBACK, 0))
    peak = 0
    bulk = bytes(BULK_MESSAGE)

    def held(connection: Connection) -> int:
        statistics = connection.statistics()
        return statistics.held + statistics.reassembly

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
            trio.open_nursery() as nursery,
        ):
            receiver = await listener.accept()

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
    finally:
        client_endpoint.close()
        server_endpoint.close()
    return peak, config.receive_window


# -- figures -----------------------------------------------------------------------------------


def _ratio_range(values: Sequence[float], baselines: Sequence[float]) -> str:
    ratios = [v / b for v, b in zip(values, baselines, strict=True)]
    return f"{min(ratios):.2f}-{max(ratios):.2f}x"


def _figures(
    one: dict[BackendName, list[_Driven]],
    two: dict[str, dict[str, list[_Transfer]]],
    memory: dict[tuple[BackendName, str], tuple[int, int]],
) -> list[Figure]:
    bulk = {name: [d.bytes_per_second for d in one[name]] for name in BACKENDS}
    rtt = {name: [d.seconds_per_round_trip for d in one[name]] for name in BACKENDS}
    print(
        f"quic backends: {REPS} alternating reps, medians below; rep-by-rep qh3/aioquic: bulk"
        f" {_ratio_range(bulk['qh3'], bulk['aioquic'])}, round trip"
        f" {_ratio_range(rtt['qh3'], rtt['aioquic'])}",
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
            median(rtt["qh3"]) * 1e6,
            "us",
            median(rtt["aioquic"]) * 1e6,
            "<= 0.6x",
        ),
    ]

    def rate(driver: str) -> float:
        return median(TOTAL / t.seconds for t in two[driver]["bulk"]) / 1e6

    def round_trip(driver: str, placement: str = "rtt") -> float:
        return median(t.seconds for t in two[driver][placement]) * 1e6

    def cpu(driver: str) -> float:
        return median(t.server_cpu / (TOTAL / 1e6) for t in two[driver]["bulk"]) * 1e6

    for name, baseline in (("qh3", "aioquic"), ("qh3", "minimal"), ("aioquic", "minimal")):
        label = "aioquic backend" if baseline == "aioquic" else "minimal aioquic driver"
        figures += [
            Figure(
                f"QUIC two processes: {size}, {name} vs {label}",
                rate(name),
                "MB/s",
                rate(baseline),
                ">= 5x" if baseline == "aioquic" else ">= 1.0x",
            ),
            Figure(
                f"QUIC two processes: {SMALL} B round trip, {name} vs {label}",
                round_trip(name),
                "us",
                round_trip(baseline),
                "<= 0.6x" if baseline == "aioquic" else "<= 1.0x",
            ),
        ]
    for placement in PLACEMENTS:
        if placement not in two["minimal"]:
            continue
        for name, baseline in (("qh3", "aioquic"), ("aioquic", "minimal")):
            label = "aioquic backend" if baseline == "aioquic" else "minimal aioquic driver"
            figures.append(
                Figure(
                    f"QUIC two processes on {placement}: {SMALL} B round trip, {name} vs {label}",
                    round_trip(name, placement),
                    "us",
                    round_trip(baseline, placement),
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
        _serve(*sys.argv[2:6])
    else:

        async def _main() -> None:
            for figure in await run():
                print(figure.render(), flush=True)

        trio.run(_main)
