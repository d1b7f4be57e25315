"""BEP 44 items: the specification's test vectors, signing, verification and limits."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from macula_nat.dht.error_code import ErrorCode
from macula_nat.dht.mutable_item import (
    MAX_SEQ,
    ImmutableItem,
    ItemError,
    MutableItem,
    decode_value,
    encode_value,
    immutable_target,
    mutable_target,
    public_key_bytes,
    signature_input,
)
from macula_nat.dht.node_id import NodeId

from .strategies import bencodables, private_keys, salts, seqs, values

# BEP 44 "Test vectors" (public domain). The private key is given there in its 64-byte expanded
# form, which `cryptography` cannot load, so the vectors are checked by verification.
VALUE = b"12:Hello World!"
PUBLIC_KEY = bytes.fromhex("77ff84905a91936367c01360803104f92432fcd904a43511876df5cdf3e7e548")
SIGNATURE_1 = bytes.fromhex(
    "305ac8aeb6c9c151fa120f120ea2cfb923564e11552d06a5d856091e5e853cff"
    "1260d3f39e4999684aa92eb73ffd136e6f4f3ecbfda0ce53a1608ecd7ae21f01"
)
TARGET_1 = NodeId.from_hex("4a533d47ec9c7d95b1ad75f576cffc641853b750")
SIGNATURE_2 = bytes.fromhex(
    "6834284b6b24c3204eb2fea824d82f88883a3d95e8b4a21b8c0ded553d17d17d"
    "df9a8a7104b1258f30bed3787e6cb896fca78c58f8e03b5f18f14951a87d9a08"
)
TARGET_2 = NodeId.from_hex("411eba73b6f087ca51a3795d9c8c938d365e32c1")
TARGET_3 = NodeId.from_hex("e5f96f6f38320f0f33959cb4d3d656452117aadb")

SIGNING = settings(max_examples=60, deadline=None)


def test_vector_1_mutable() -> None:
    assert signature_input(1, VALUE) == b"3:seqi1e1:v12:Hello World!"
    item = MutableItem(PUBLIC_KEY, 1, VALUE, SIGNATURE_1)
    assert item.signed_bytes == b"3:seqi1e1:v12:Hello World!"
    assert item.target == TARGET_1 == mutable_target(PUBLIC_KEY)
    assert item.verify()


def test_vector_2_mutable_with_salt() -> None:
    assert signature_input(1, VALUE, b"foobar") == b"4:salt6:foobar3:seqi1e1:v12:Hello World!"
    item = MutableItem(PUBLIC_KEY, 1, VALUE, SIGNATURE_2, b"foobar")
    assert item.target == TARGET_2 == mutable_target(PUBLIC_KEY, b"foobar")
    assert item.verify()


def test_vector_3_immutable() -> None:
    assert ImmutableItem(VALUE).target == TARGET_3 == immutable_target(VALUE)


def test_vectors_fail_when_anything_changes() -> None:
    assert not MutableItem(PUBLIC_KEY, 1, VALUE, SIGNATURE_2).verify()  # salt left out
    assert not MutableItem(PUBLIC_KEY, 1, VALUE, SIGNATURE_1, b"foobar").verify()
    assert not MutableItem(PUBLIC_KEY, 2, VALUE, SIGNATURE_1).verify()
    assert not MutableItem(PUBLIC_KEY, 1, b"12:Hello World?", SIGNATURE_1).verify()
    assert not MutableItem(bytes(32), 1, VALUE, SIGNATURE_1).verify()
    assert not MutableItem(b"\xff" * 32, 1, VALUE, SIGNATURE_1).verify()


def test_signature_input_for_bep44_examples() -> None:
    value = b"12:Hello world!"
    assert signature_input(4, value) == b"3:seqi4e1:v12:Hello world!"
    assert signature_input(4, value, b"foobar") == b"4:salt6:foobar3:seqi4e1:v12:Hello world!"
    assert signature_input(0, b"i-7e") == b"3:seqi0e1:vi-7e"


@SIGNING
@given(private_keys, values, seqs, salts)
def test_signed_items_verify_and_live_under_key_and_salt(
    key: Ed25519PrivateKey, value: bytes, seq: int, salt: bytes
) -> None:
    item = MutableItem.sign(key, value, seq, salt)
    assert item.verify()
    assert item.public_key == public_key_bytes(key)
    assert item.target == mutable_target(item.public_key, salt)
    key.public_key().verify(item.signature, signature_input(seq, value, salt))


@SIGNING
@given(private_keys, values, seqs, salts, st.data())
def test_any_change_breaks_the_signature(
    key: Ed25519PrivateKey, value: bytes, seq: int, salt: bytes, data: st.DataObject
) -> None:
    item = MutableItem.sign(key, value, seq, salt)
    field = data.draw(st.sampled_from(["seq", "value", "salt", "signature", "public_key"]))
    if field == "seq":
        changed = MutableItem(item.public_key, seq ^ 1, value, item.signature, salt)
    elif field == "value":
        other = data.draw(values.filter(lambda v: v != value))
        changed = MutableItem(item.public_key, seq, other, item.signature, salt)
    elif field == "salt":
        other_salt = data.draw(salts.filter(lambda s: s != salt))
        changed = MutableItem(item.public_key, seq, value, item.signature, other_salt)
    elif field == "signature":
        position = data.draw(st.integers(0, 63))
        flipped = bytearray(item.signature)
        flipped[position] ^= 1 << data.draw(st.integers(0, 7))
        changed = MutableItem(item.public_key, seq, value, bytes(flipped), salt)
    else:
        other_key = data.draw(private_keys)
        changed = MutableItem(public_key_bytes(other_key), seq, value, item.signature, salt)
        if changed.public_key == item.public_key:
            return
    assert not changed.verify()


def test_limits_carry_bep44_error_codes() -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes(32))
    largest = b"996:" + bytes(996)
    assert len(largest) == 1000
    assert MutableItem.sign(key, largest, MAX_SEQ, bytes(64)).verify()
    cases = [
        (lambda: MutableItem.sign(key, b"997:" + bytes(997), 0), ErrorCode.MESSAGE_TOO_BIG),
        (lambda: ImmutableItem(b"997:" + bytes(997)), ErrorCode.MESSAGE_TOO_BIG),
        (lambda: MutableItem.sign(key, b"0:", 0, bytes(65)), ErrorCode.SALT_TOO_BIG),
        (lambda: MutableItem.sign(key, b"0:", -1), ErrorCode.PROTOCOL),
        (lambda: MutableItem.sign(key, b"0:", MAX_SEQ + 1), ErrorCode.PROTOCOL),
        (lambda: MutableItem(bytes(31), 0, b"0:", bytes(64)), ErrorCode.PROTOCOL),
        (lambda: MutableItem(bytes(32), 0, b"0:", bytes(63)), ErrorCode.PROTOCOL),
        (lambda: ImmutableItem(b"3:ab"), ErrorCode.PROTOCOL),
        (lambda: ImmutableItem(b"i1ei2e"), ErrorCode.PROTOCOL),
        (lambda: ImmutableItem(b"d1:bi1e1:ai2ee"), ErrorCode.PROTOCOL),  # keys out of order
    ]
    for build, code in cases:
        with pytest.raises(ItemError) as caught:
            build()
        assert caught.value.code == code
    with pytest.raises(TypeError):
        ImmutableItem("0:")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        MutableItem(bytes(32), True, b"0:", bytes(64))


@given(bencodables)
def test_values_encode_and_decode(value: object) -> None:
    encoded = encode_value(value)  # type: ignore[arg-type]
    assert decode_value(encoded) == value


def test_what_bencoding_cannot_carry() -> None:
    for value in (1.5, "text", True, {"key": 1}, None):
        with pytest.raises(ItemError):
            encode_value(value)  # type: ignore[arg-type]
    with pytest.raises(ItemError):
        decode_value(b"i1")
