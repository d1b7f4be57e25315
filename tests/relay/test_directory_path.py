"""A UDP-blocked node's directory through its relay: the frames and bodies (sans-IO), the
relay core's rate and effects, the relay's answers from a directory, and the node's side."""

from __future__ import annotations

import math
from typing import cast

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from trio_util import AsyncValue

from macula_nat.dht.mutable_item import MutableItem, signature_input
from macula_nat.directory import EmbeddedDirectory, NodeRecord
from macula_nat.directory.fallback import FallbackDirectory
from macula_nat.directory.mainline import PROFILE_SALT
from macula_nat.identity import NodeKey
from macula_nat.net.address import Address
from macula_nat.relay import RelayedDirectory, RelayTimeout, frames
from macula_nat.relay.core import DirectoryAsked
from macula_nat.relay.directory_path import (
    MAX_RELAYS,
    DirectoryPathError,
    decode_publish,
    decode_record,
    decode_relays,
    encode_publish,
    encode_record,
    encode_relays,
    serve_query,
)
from macula_nat.relay.frames import (
    MAX_DIRECTORY_BODY,
    DirectoryAnswer,
    DirectoryOp,
    DirectoryQuery,
    DirectoryStatus,
    FrameError,
)
from macula_nat.relay.registry import RelayRegistry
from macula_nat.relay.settings import RelayConfig

from .test_core import A, B, Node, new_core, register

RELAY: Address = ("198.51.100.10", 3480)
RECORD = NodeRecord(
    profile=None, home_relay=("198.51.100.10", 3480), candidates=[("203.0.113.5", 4000)],
    expires_at=2_000_000_000, seq=7,
)  # fmt: skip


def signed(key: NodeKey, record: NodeRecord = RECORD, salt: bytes = PROFILE_SALT) -> MutableItem:
    value = record.encode()
    signature = key.sign(signature_input(record.seq, value, salt))
    return MutableItem(key.node_id.raw, record.seq, value, signature, salt)


@given(
    request=st.integers(1, 2**32 - 1),
    op=st.sampled_from(DirectoryOp),
    status=st.sampled_from(DirectoryStatus),
    body=st.binary(max_size=MAX_DIRECTORY_BODY),
)
def test_directory_frames_round_trip(
    request: int, op: DirectoryOp, status: DirectoryStatus, body: bytes
) -> None:
    for frame in (DirectoryQuery(request, op, body), DirectoryAnswer(request, status, body)):
        kind, encoded = frames.encode_body(frame)
        assert frames.decode_body(kind, encoded) == frame


def test_oversized_or_unknown_directory_frames_are_refused() -> None:
    with pytest.raises(ValueError):
        DirectoryQuery(1, DirectoryOp.RESOLVE, bytes(MAX_DIRECTORY_BODY + 1))
    kind, body = frames.encode_body(DirectoryQuery(1, DirectoryOp.RESOLVE, b""))
    with pytest.raises(FrameError):
        frames.decode_body(kind, body + bytes(MAX_DIRECTORY_BODY + 1))
    with pytest.raises(FrameError):
        frames.decode_body(kind, body[:5] + bytes([99]))  # no such operation
    with pytest.raises(FrameError):
        frames.decode_body(kind, body[:1] + bytes(4) + body[5:])  # request 0


def test_a_publish_carries_the_nodes_signed_record_and_nothing_else() -> None:
    key = NodeKey.generate()
    item = signed(key)
    body = encode_publish(item, 600)
    assert decode_publish(key.node_id, body) == (item, 600)
    other = NodeKey.generate()
    with pytest.raises(DirectoryPathError, match="not signed"):
        decode_publish(other.node_id, body)  # another registration cannot publish it
    with pytest.raises(DirectoryPathError, match="not signed"):
        decode_publish(key.node_id, body[:12] + bytes([body[12] ^ 1]) + body[13:])  # forged
    with pytest.raises(DirectoryPathError, match="not signed"):
        decode_publish(key.node_id, encode_publish(signed(key, salt=b"other"), 600))
    with pytest.raises(DirectoryPathError, match="ttl"):
        decode_publish(key.node_id, encode_publish(item, 0))
    value = b"d1:xi1ee"  # bencoded, signed, no record
    junk = MutableItem.sign(key.private_key, value, 1, PROFILE_SALT)
    with pytest.raises(DirectoryPathError, match="not a record"):
        decode_publish(key.node_id, encode_publish(junk, 600))
    with pytest.raises(DirectoryPathError):
        decode_publish(key.node_id, body[:40])


@given(st.lists(st.tuples(st.ip_addresses().map(str), st.integers(1, 65535)), max_size=40))
def test_a_relay_list_round_trips_up_to_its_bound(relays: list[Address]) -> None:
    decoded = decode_relays(encode_relays(relays))
    assert decoded == [(str(ip), port) for ip, port in relays[:MAX_RELAYS]]


def test_malformed_answers_are_errors() -> None:
    good = encode_relays([("198.51.100.1", 1), ("2001:db8::1", 2)])
    for bad in (good[:-1], b"\x05" + bytes(5), good * 20):
        with pytest.raises(DirectoryPathError):
            decode_relays(bad)
    assert decode_record(encode_record(RECORD)) == RECORD
    for bad in (b"", bytes(8), bytes(8) + b"not bencode"):
        with pytest.raises(DirectoryPathError):
            decode_record(bad)


def test_the_core_hands_queries_on_within_a_registrations_rate_and_answers_busy_beyond() -> None:
    core = new_core(RelayConfig(directory_rate=1.0, directory_burst=2.0))
    node, stranger = Node(A), Node(B)
    register(core, node)
    query = DirectoryQuery(1, DirectoryOp.LIST_RELAYS, b"")
    for _ in range(2):
        assert core.receive(node.sealed(query), A, 0.0) == []
    effects = [e for e in core.take_effects() if isinstance(e, DirectoryAsked)]
    assert [(e.node, e.query) for e in effects] == [(node.id, query)] * 2
    [(busy, to)] = core.receive(node.sealed(query), A, 0.0)
    assert to == A and node.opened(busy) == DirectoryAnswer(1, DirectoryStatus.BUSY, b"")
    assert core.statistics().directory_queries == 2
    assert core.receive(node.sealed(query), A, 1.0) == []  # a token back a second later
    answer = DirectoryAnswer(1, DirectoryStatus.OK, b"")
    [(sent, to)] = core.answer_directory(node.id, answer)
    assert to == A and node.opened(sent) == answer
    assert core.answer_directory(stranger.id, answer) == []  # not registered: nothing


async def test_the_relay_answers_from_its_directory() -> None:
    directory = EmbeddedDirectory(clock=lambda: 1_000_000_000)
    key = NodeKey.generate()
    node = key.node_id
    body = encode_publish(signed(key), 600)

    async def ask(op: DirectoryOp, body: bytes) -> tuple[DirectoryStatus, bytes]:
        return await serve_query(directory, node, op, body, 1.0)

    assert await ask(DirectoryOp.RESOLVE, node.raw) == (DirectoryStatus.NOT_FOUND, b"")
    assert await ask(DirectoryOp.PUBLISH, body) == (DirectoryStatus.OK, b"")
    status, answer = await ask(DirectoryOp.RESOLVE, node.raw)
    assert status is DirectoryStatus.OK
    assert decode_record(answer).home_relay == RECORD.home_relay
    stranger = NodeKey.generate().node_id
    refused = await serve_query(directory, stranger, DirectoryOp.PUBLISH, body, 1.0)
    assert refused == (DirectoryStatus.REFUSED, b"")
    assert await ask(DirectoryOp.RESOLVE, bytes(31)) == (DirectoryStatus.REFUSED, b"")
    assert await ask(DirectoryOp.LIST_RELAYS, b"x") == (DirectoryStatus.REFUSED, b"")
    await directory.announce_relay(("198.51.100.10", 3480), 60)
    status, relays = await ask(DirectoryOp.LIST_RELAYS, b"")
    assert decode_relays(relays) == [("198.51.100.10", 3480)]


async def test_a_slow_directory_fails_the_query_in_time(autojump_clock: trio.abc.Clock) -> None:
    class Stuck(EmbeddedDirectory):
        async def list_relays(self) -> list[Address]:
            await trio.sleep_forever()
            raise AssertionError

    started = trio.current_time()
    answer = await serve_query(Stuck(), NodeKey.generate().node_id, DirectoryOp.LIST_RELAYS,
                               b"", 2.0)  # fmt: skip
    assert answer == (DirectoryStatus.FAILED, b"")
    assert math.isclose(trio.current_time() - started, 2.0)


async def test_a_fallback_directory_follows_its_condition() -> None:
    primary, fallback = EmbeddedDirectory(), EmbeddedDirectory()
    blocked = [False]
    directory = FallbackDirectory(primary, fallback, lambda: blocked[0])
    await directory.announce_relay(("198.51.100.1", 1), 60)
    blocked[0] = True
    await directory.announce_relay(("198.51.100.2", 2), 60)
    assert await primary.list_relays() == [("198.51.100.1", 1)]
    assert await directory.list_relays() == [("198.51.100.2", 2)]


async def test_a_relay_answers_queries_through_a_registration_and_bounds_them(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Without a directory a relay refuses queries; with one it answers; with its runners all
    stuck (16) and its queue full (256), the next query is answered BUSY at once."""
    from .support import open_mesh

    class Stuck(EmbeddedDirectory):
        async def list_relays(self) -> list[Address]:
            await trio.sleep_forever()
            raise AssertionError

    config = RelayConfig(
        directory_rate=1000.0, directory_burst=1000.0, control_rate=1000.0, control_burst=1000.0
    )
    async with open_mesh(config) as mesh:
        client = await mesh.node()
        answer = await client.query_directory(DirectoryOp.LIST_RELAYS, b"")
        assert answer.status is DirectoryStatus.REFUSED  # no directory at this relay
        directory = EmbeddedDirectory()
        await directory.announce_relay(("198.51.100.7", 7), 60)
        mesh.relay.directory = directory
        answer = await client.query_directory(DirectoryOp.LIST_RELAYS, b"")
        assert decode_relays(answer.body) == [("198.51.100.7", 7)]

        mesh.relay.directory = Stuck()
        statuses: list[DirectoryStatus] = []

        async def ask() -> None:
            try:
                answer = await client.query_directory(DirectoryOp.LIST_RELAYS, b"", timeout=0.5)
            except RelayTimeout:
                return  # stuck in a runner or the queue: no answer
            statuses.append(answer.status)

        async with trio.open_nursery() as nursery:
            for _ in range(16 + 1 + 256 + 1):  # running, waiting for a runner, queued, BUSY
                nursery.start_soon(ask)
                await trio.sleep(0.001)  # paced: a burst would overflow the relay's socket
        assert statuses == [DirectoryStatus.BUSY]
        assert mesh.relay.statistics().directory_queries >= 16 + 256


async def test_a_node_asking_for_many_records_at_once_waits_out_busy_answers(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A node that connects to a dozen peers at once resolves their records through its
    relay beyond the relay's burst: what the relay answers BUSY is asked again (every
    ``BUSY_RETRY``, within the call's timeout), not given up (the lab's blocked node that
    dialled ten peers went without three of their records, so without their profiles)."""
    from .support import open_mesh

    config = RelayConfig(directory_rate=2.0, directory_burst=3.0)
    async with open_mesh(config) as mesh:
        directory = EmbeddedDirectory()
        keys = [NodeKey.generate() for _ in range(8)]
        for key in keys:
            await directory.publish_record(key.node_id.text(), None, 60, home_relay=RELAY)
        mesh.relay.directory = directory
        client = await mesh.node()

        class Held:  # the part of a relay registry the relayed directory reads
            def __init__(self) -> None:
                self.client = client
                self.home_registration = AsyncValue(client)

        held = cast(RelayRegistry, Held())
        relayed = RelayedDirectory(NodeKey.generate(), lambda: held)
        found: list[NodeRecord | None] = []

        async def resolve(key: NodeKey) -> None:
            found.append(await relayed.resolve_record(key.node_id.text()))

        async with trio.open_nursery() as nursery:
            for key in keys:
                nursery.start_soon(resolve, key)
        assert [record.home_relay if record else None for record in found] == [RELAY] * 8
        assert mesh.relay.statistics().directory_queries == 8
