"""The client's proof of its node key (qh3's server asks for no client certificate): sans-IO
checks of the proof itself, then a live server refusing a forged proof, a proof replayed from
another connection, application data before the proof and a node it does not allow, on each
backend, and the two backends connecting to each other."""

from __future__ import annotations

import os

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from macula_nat.connection import (
    ConnectionConfig,
    PeerAuthenticationFailed,
    connect,
    driver,
    listen,
)
from macula_nat.connection.backend import BackendName
from macula_nat.connection.proof import PROOF_SIZE, BadProof, check_proof, make_proof
from macula_nat.identity import NodeKey
from macula_nat.net.sim import open_internet
from tests.connection.test_driver import pair

CLIENT = NodeKey.from_seed(bytes(32))
SERVER = NodeKey.from_seed(bytes(31) + b"\x01")
STRANGER = NodeKey.from_seed(bytes(31) + b"\x02")
SECRET = bytes(range(32))


# -- the proof, sans-IO ------------------------------------------------------------------------


def test_a_good_proof_names_its_client() -> None:
    proof = make_proof(CLIENT, SERVER.node_id, SECRET)
    assert len(proof) == PROOF_SIZE
    assert check_proof(proof, SERVER.node_id, SECRET) == CLIENT.node_id


def test_a_proof_from_another_session_is_refused() -> None:
    """Replayed on another connection, the exporter differs: the signature does not verify."""
    proof = make_proof(CLIENT, SERVER.node_id, SECRET)
    with pytest.raises(BadProof, match="does not verify"):
        check_proof(proof, SERVER.node_id, bytes(32))


def test_a_proof_for_another_server_is_refused() -> None:
    """Relayed to a server other than the one it was made for (both node ids are signed)."""
    proof = make_proof(CLIENT, STRANGER.node_id, SECRET)
    with pytest.raises(BadProof, match="does not verify"):
        check_proof(proof, SERVER.node_id, SECRET)


def test_a_proof_naming_another_node_is_refused() -> None:
    """The stranger's signature under the client's name (a forged claim of identity)."""
    forged = CLIENT.node_id.raw + make_proof(STRANGER, SERVER.node_id, SECRET)[32:]
    with pytest.raises(BadProof, match="does not verify"):
        check_proof(forged, SERVER.node_id, SECRET)


@given(st.binary(max_size=2 * PROOF_SIZE))
def test_any_bytes_but_a_proof_are_refused_with_a_clear_error(junk: bytes) -> None:
    with pytest.raises(BadProof):
        check_proof(junk, SERVER.node_id, SECRET)


@given(st.integers(0, PROOF_SIZE - 1), st.integers(1, 255))
def test_a_proof_with_any_byte_changed_is_refused(index: int, flip: int) -> None:
    proof = bytearray(make_proof(CLIENT, SERVER.node_id, SECRET))
    proof[index] ^= flip
    with pytest.raises(BadProof):
        check_proof(bytes(proof), SERVER.node_id, SECRET)


# -- a live server -----------------------------------------------------------------------------


async def refused(config: ConnectionConfig, client: NodeKey = CLIENT) -> tuple[str, list[str]]:
    """Connect ``client`` to a server allowing only CLIENT: the client's failure, and the
    listener's (nothing may be accepted)."""
    async with open_internet() as internet:
        client_ep, server_ep = await pair(internet)
        async with listen(server_ep, SERVER, [CLIENT.node_id], config=config) as listener:
            with pytest.raises(PeerAuthenticationFailed) as failure:
                async with connect(
                    client_ep, server_ep.local_address, client, SERVER.node_id, config=config
                ):
                    pytest.fail("the server accepted the client")
            await trio.sleep(2)
            with trio.move_on_after(1) as scope:
                await listener.accept()
            assert scope.cancelled_caught
            return str(failure.value), [str(f) for f in listener.failures]


async def test_a_forged_proof_is_refused(
    autojump_clock: trio.testing.MockClock,
    config: ConnectionConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(driver, "make_proof", lambda key, server, secret: os.urandom(PROOF_SIZE))
    client_failure, server_failures = await refused(config)
    assert client_failure == "the peer rejected our identity"
    assert server_failures and "proof" in server_failures[-1]


async def test_a_proof_replayed_from_another_connection_is_refused(
    autojump_clock: trio.testing.MockClock,
    config: ConnectionConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A proof that verified on one connection, sent on the next (same client, same server)."""
    recorded: list[bytes] = []

    def record(key: NodeKey, server: object, secret: bytes) -> bytes:
        proof = make_proof(key, SERVER.node_id, secret)
        recorded.append(proof)
        return recorded[0]

    monkeypatch.setattr(driver, "make_proof", record)
    async with open_internet() as internet:
        client_ep, server_ep = await pair(internet)
        async with listen(server_ep, SERVER, [CLIENT.node_id], config=config) as listener:
            async with connect(
                client_ep, server_ep.local_address, CLIENT, SERVER.node_id, config=config
            ):
                await listener.accept()
            with pytest.raises(PeerAuthenticationFailed, match="rejected our identity"):
                async with connect(
                    client_ep, server_ep.local_address, CLIENT, SERVER.node_id, config=config
                ):
                    pytest.fail("the server accepted a replayed proof")
            assert len(recorded) == 2 and recorded[0] != recorded[1]
            assert "does not verify" in str(listener.failures[-1])


async def test_application_data_before_the_proof_is_refused(
    autojump_clock: trio.testing.MockClock,
    config: ConnectionConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A client whose first stream carries a message, not its proof: the server closes with
    AUTH_REQUIRED and delivers nothing."""
    open_uni = driver.Connection._open_uni

    def message_first(connection: driver.Connection, kind: bytes) -> int:
        if connection._is_client and kind == driver._PROOF:
            early = open_uni(connection, driver._MESSAGES)
            connection._quic.send_stream_data(early, driver._LENGTH.pack(5) + b"early")
        return open_uni(connection, kind)

    monkeypatch.setattr(driver.Connection, "_open_uni", message_first)
    client_failure, server_failures = await refused(config)
    assert client_failure == "the peer wanted our proof first"
    assert "before its proof" in server_failures[-1]


async def test_a_node_the_server_does_not_allow_is_refused(
    autojump_clock: trio.testing.MockClock, config: ConnectionConfig
) -> None:
    """The stranger's proof is good, but the stranger is not allowed."""
    client_failure, server_failures = await refused(config, client=STRANGER)
    assert client_failure == "the peer rejected our identity"
    assert f"is node {STRANGER.node_id.short()}, not allowed" in server_failures[-1]


@pytest.mark.parametrize(("client", "server"), [("qh3", "aioquic"), ("aioquic", "qh3")])
async def test_nodes_on_different_backends_connect(
    autojump_clock: trio.testing.MockClock, client: BackendName, server: BackendName
) -> None:
    """The same wire protocol on both: a node may switch backends without its peers (an
    aioquic client's Initial runs a qh3 server out of anti-amplification budget mid-flight:
    the rest of the flight waits for the client's ACK)."""
    client_config = ConnectionConfig(quic_backend=client)
    server_config = ConnectionConfig(quic_backend=server)
    async with open_internet() as internet:
        client_ep, server_ep = await pair(internet)
        async with (
            listen(server_ep, SERVER, [CLIENT.node_id], config=server_config) as listener,
            connect(
                client_ep, server_ep.local_address, CLIENT, SERVER.node_id, config=client_config
            ) as conn,
        ):
            accepted = await listener.accept()
            assert accepted.peer_id == CLIENT.node_id
            await conn.send_message(b"across backends")
            assert await accepted.receive_message() == b"across backends"
            await accepted.send_message(b"and back")
            assert await conn.receive_message() == b"and back"


async def test_stream_data_ahead_of_the_proof_waits_for_it(
    autojump_clock: trio.testing.MockClock,
    config: ConnectionConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Data on another stream that arrives before the proof (reordered) is held, then
    delivered once the proof verifies: nothing lost, nothing early."""
    open_uni = driver.Connection._open_uni
    early: list[int] = []

    def stream_first(connection: driver.Connection, kind: bytes) -> int:
        if connection._is_client and kind == driver._PROOF:
            stream_id = connection._quic.next_stream_id(unidirectional=False)
            connection._quic.send_stream_data(stream_id, b"early", end_stream=True)
            early.append(stream_id)
        return open_uni(connection, kind)

    monkeypatch.setattr(driver.Connection, "_open_uni", stream_first)
    async with open_internet() as internet:
        client_ep, server_ep = await pair(internet)
        async with (
            listen(server_ep, SERVER, [CLIENT.node_id], config=config) as listener,
            connect(client_ep, server_ep.local_address, CLIENT, SERVER.node_id, config=config),
        ):
            accepted = await listener.accept()
            stream = await accepted.accept_stream()
            assert [stream.stream_id] == early
            assert await stream.receive_some() == b"early"
