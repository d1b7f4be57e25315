"""Node identity: ids and their text forms, keys on disk, domain-separated signatures, envelopes."""

from __future__ import annotations

import os
import pickle
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from macula_nat.identity import (
    KEY_FILE_HEADER,
    BadSignature,
    EnvelopeError,
    KeyFileError,
    NodeId,
    NodeKey,
    SignedEnvelope,
    signing_input,
)

KEY = NodeKey.from_seed(bytes(range(32)))
OTHER = NodeKey.from_seed(bytes(range(1, 33)))
PURPOSE = "macula-nat/test/v1"

raw_ids = st.binary(min_size=32, max_size=32)
purposes = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40)


# -- node ids -----------------------------------------------------------------------------------


@given(raw_ids)
def test_text_round_trips_and_short_is_its_first_eight_bytes(raw: bytes) -> None:
    node_id = NodeId(raw)

    assert NodeId.from_text(node_id.text()) == node_id
    assert NodeId.from_text(node_id.text().upper()) == node_id
    assert str(node_id) == node_id.text() == raw.hex()
    assert node_id.short() == raw[:8].hex() == node_id.text()[:16]
    assert bytes(node_id) == raw
    assert node_id.short() in repr(node_id)


def test_ids_pickle_as_their_bytes() -> None:
    node_id = KEY.node_id

    again = pickle.loads(pickle.dumps(node_id))

    assert again == node_id and again.verify(KEY.sign(b"x"), b"x")


@pytest.mark.parametrize(
    "text",
    ["", "00" * 31, "00" * 33, "zz" * 32, "0x" + "00" * 31, " " + "00" * 31 + "0", "é" * 64],
)
def test_from_text_rejects_anything_but_64_hex_digits(text: str) -> None:
    with pytest.raises(ValueError, match="node id"):
        NodeId.from_text(text)


@pytest.mark.parametrize("raw", [b"", bytes(31), bytes(33), bytearray(32)])
def test_a_node_id_is_exactly_32_bytes(raw: bytes) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        NodeId(raw)


@given(raw_ids, raw_ids)
def test_ids_are_values_hashed_and_ordered_by_their_bytes(a: bytes, b: bytes) -> None:
    first, second = NodeId(a), NodeId(b)

    assert (first == second) == (a == b)
    assert (hash(first) == hash(NodeId(a))) and NodeId(a) in {first}
    assert (first < second) == (a < b)
    assert sorted([first, second]) == [NodeId(x) for x in sorted([a, b])]


# -- signatures ---------------------------------------------------------------------------------


@given(st.binary(max_size=200))
def test_a_signature_verifies_under_its_key_only(data: bytes) -> None:
    signature = KEY.sign(data)

    assert KEY.node_id.verify(signature, data)
    assert not OTHER.node_id.verify(signature, data)


@given(st.binary(max_size=64), st.data())
def test_any_flipped_bit_in_data_or_signature_fails(data: bytes, draw: st.DataObject) -> None:
    signature = KEY.sign(data)
    blob = bytearray(signature + data)
    bit = draw.draw(st.integers(0, 8 * len(blob) - 1))
    blob[bit // 8] ^= 1 << (bit % 8)

    assert not KEY.node_id.verify(bytes(blob[:64]), bytes(blob[64:]))


@given(st.binary(max_size=100), st.binary(max_size=100))
def test_verify_never_raises_for_garbage(signature: bytes, data: bytes) -> None:
    assert KEY.node_id.verify(signature, data) is False


def test_verify_refuses_what_is_not_bytes() -> None:
    signature = KEY.sign(b"x")

    assert not KEY.node_id.verify(bytearray(signature), b"x")  # type: ignore[arg-type]


@given(purposes, purposes, st.binary(max_size=50))
def test_a_signature_for_one_purpose_is_worthless_for_another(
    purpose: str, other: str, data: bytes
) -> None:
    signature = KEY.sign_for(purpose, data)

    assert KEY.node_id.verify_for(purpose, signature, data)
    assert KEY.node_id.verify_for(other, signature, data) == (other == purpose)
    assert not KEY.node_id.verify(signature, data)  # a raw signature is another domain too


def test_the_purpose_is_length_prefixed_so_pairs_cannot_collide() -> None:
    assert signing_input("ab", b"c") != signing_input("a", b"bc")
    assert not KEY.node_id.verify_for("a", KEY.sign_for("ab", b"c"), b"bc")


@pytest.mark.parametrize("purpose", ["", "x" * 256, "caf\u00e9"])
def test_a_purpose_is_1_to_255_ascii_bytes(purpose: str) -> None:
    with pytest.raises(ValueError, match="purpose"):
        KEY.sign_for(purpose, b"data")


def test_a_key_from_a_seed_is_that_seed_s_key_and_repr_hides_the_seed() -> None:
    again = NodeKey.from_seed(bytes(range(32)))

    assert again.node_id == KEY.node_id
    assert NodeKey.generate().node_id != KEY.node_id
    assert bytes(range(32)).hex() not in repr(KEY)
    with pytest.raises(ValueError, match="32 bytes"):
        NodeKey.from_seed(bytes(31))


# -- key files ----------------------------------------------------------------------------------


def test_load_or_create_creates_an_owner_only_file_and_loads_it_again(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    old_umask = os.umask(0)  # even the most permissive umask leaves the key private
    try:
        created = NodeKey.load_or_create(path)
    finally:
        os.umask(old_umask)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().splitlines()[0] == KEY_FILE_HEADER
    assert NodeKey.load_or_create(path).node_id == created.node_id
    assert NodeKey.load(path).node_id == created.node_id
    assert [p.name for p in tmp_path.iterdir()] == ["node.key"]


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    NodeKey.load_or_create(path)
    path.chmod(0o644)

    with pytest.raises(KeyFileError, match=r"mode 0644.*chmod 600"):
        NodeKey.load_or_create(path)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not a key\n",
        f"{KEY_FILE_HEADER}\n".encode(),
        f"{KEY_FILE_HEADER}\n{'ab' * 31}\n".encode(),
        f"{KEY_FILE_HEADER}\n{'zz' * 32}\n".encode(),
        f"{KEY_FILE_HEADER}\n{'ab' * 32}\nextra\n".encode(),
        bytes(32),
    ],
)
def test_a_corrupt_key_file_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "node.key"
    path.write_bytes(content)
    path.chmod(0o600)

    with pytest.raises(KeyFileError, match="corrupt"):
        NodeKey.load_or_create(path)


def test_a_directory_or_a_symbolic_link_is_not_a_key_file(tmp_path: Path) -> None:
    directory = tmp_path / "dir"
    directory.mkdir(mode=0o700)
    target = tmp_path / "real.key"
    NodeKey.load_or_create(target)
    link = tmp_path / "link.key"
    link.symlink_to(target)

    with pytest.raises(KeyFileError, match="regular file"):
        NodeKey.load_or_create(directory)
    with pytest.raises(KeyFileError, match="symbolic link"):
        NodeKey.load_or_create(link)


def test_creation_never_overwrites_a_key_stored_meanwhile(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    first = NodeKey.load_or_create(path)
    loser = NodeKey.generate()

    assert not loser._store_new(path)  # the race load_or_create settles by loading the winner
    assert NodeKey.load(path).node_id == first.node_id
    assert [p.name for p in tmp_path.iterdir()] == ["node.key"]


# -- signed envelopes ---------------------------------------------------------------------------


@given(st.binary(max_size=300), purposes)
def test_an_envelope_round_trips_and_opens_for_its_purpose_and_signer(
    payload: bytes, purpose: str
) -> None:
    envelope = SignedEnvelope.sign(KEY, purpose, payload)
    decoded = SignedEnvelope.decode(envelope.encode())

    assert decoded == envelope
    assert decoded.open(purpose) == payload
    assert decoded.open(purpose, KEY.node_id) == payload
    assert not decoded.verify(purpose, OTHER.node_id)
    assert not decoded.verify(purpose + "x")


@given(st.binary(max_size=100), st.data())
def test_a_tampered_envelope_never_opens(payload: bytes, draw: st.DataObject) -> None:
    wire = bytearray(SignedEnvelope.sign(KEY, PURPOSE, payload).encode())
    bit = draw.draw(st.integers(8, 8 * len(wire) - 1))  # every bit after the version byte
    wire[bit // 8] ^= 1 << (bit % 8)

    with pytest.raises(BadSignature):
        SignedEnvelope.decode(bytes(wire)).open(PURPOSE)


def test_a_forger_cannot_sign_for_someone_else() -> None:
    honest = SignedEnvelope.sign(KEY, PURPOSE, b"home relay: A")
    forged = SignedEnvelope(
        b"home relay: B", KEY.node_id, OTHER.sign_for(PURPOSE, b"home relay: B")
    )
    replaced = SignedEnvelope(honest.payload, OTHER.node_id, honest.signature)

    assert honest.verify(PURPOSE, KEY.node_id)
    with pytest.raises(BadSignature, match="not signed"):
        forged.open(PURPOSE)
    assert not replaced.verify(PURPOSE)


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_decoding_garbage_raises_envelope_error_or_yields_nothing_valid(data: bytes) -> None:
    try:
        envelope = SignedEnvelope.decode(data)
    except EnvelopeError:
        return
    assert not envelope.verify(PURPOSE)
