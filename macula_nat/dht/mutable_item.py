"""BEP 44 items: signed mutable items (ed25519, seq, salt) and immutable ones.

A value is kept as its bencoded bytes, the verbatim form BEP 44 hashes and signs ("Messages":
decoding and re-encoding is not an identity in general; fastbencode only accepts canonical
bencoding, so here it is). Items are frozen values that are always within BEP 44's limits;
construction raises `ItemError`, whose ``code`` is the KRPC error a storing node answers with.
"""

from __future__ import annotations

import hashlib
from typing import Final, TypeAlias, cast

import attrs
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from . import bencoding
from .error_code import ErrorCode
from .node_id import NodeId

__all__ = [
    "MAX_SALT_SIZE",
    "MAX_SEQ",
    "MAX_VALUE_SIZE",
    "PUBLIC_KEY_SIZE",
    "SIGNATURE_SIZE",
    "Bencodable",
    "ImmutableItem",
    "Item",
    "ItemError",
    "MutableItem",
    "decode_value",
    "encode_value",
    "immutable_target",
    "mutable_target",
    "public_key_bytes",
    "signature_input",
]

MAX_VALUE_SIZE: Final = 1000
"""Bytes of bencoded ``v`` a storing node accepts (BEP 44 "Messages")."""
MAX_SALT_SIZE: Final = 64
"""BEP 44 "Mutable Items": the salt MUST NOT be longer than 64 bytes."""
MAX_SEQ: Final = (1 << 63) - 1
"""BEP 44: ``seq`` SHOULD NOT exceed MAX_INT64; negative ones MAY be rejected (we do both)."""
PUBLIC_KEY_SIZE: Final = 32
SIGNATURE_SIZE: Final = 64

Bencodable: TypeAlias = "int | bytes | list[Bencodable] | dict[bytes, Bencodable]"
"""What bencoding can carry."""


class ItemError(ValueError):
    """A value, key, salt, seq or signature outside BEP 44's rules."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.PROTOCOL) -> None:
        super().__init__(message)
        self.code = code


def encode_value(value: Bencodable) -> bytes:
    """``value`` bencoded; ItemError when it cannot be (a float, str or non-bytes key)."""
    if isinstance(value, bool):
        raise ItemError("a bool is not a bencodable value")
    try:
        encoded = bencoding.encode(value)
    except Exception as exc:  # fastbencode raises TypeError, ValueError, OverflowError...
        raise ItemError(f"{value!r:.80} is not bencodable: {exc}") from None
    return encoded


def decode_value(value: bytes) -> Bencodable:
    """The object that the bencoded ``value`` holds; ItemError when it is not bencoding."""
    try:
        decoded = bencoding.decode(bytes(value))
    except Exception as exc:  # fastbencode raises ValueError, TypeError...
        raise ItemError(f"not a bencoded value: {exc}") from None
    return cast(Bencodable, decoded)


def _check_value(value: bytes) -> bytes:
    if not isinstance(value, bytes):
        raise TypeError(f"an item value is its bencoded bytes, got {value!r:.80}")
    if len(value) > MAX_VALUE_SIZE:
        raise ItemError(
            f"bencoded value is {len(value)} bytes, at most {MAX_VALUE_SIZE}",
            ErrorCode.MESSAGE_TOO_BIG,
        )
    decode_value(value)
    return value


def _check_salt(salt: bytes) -> bytes:
    if not isinstance(salt, bytes):
        raise TypeError(f"salt must be bytes, got {salt!r:.80}")
    if len(salt) > MAX_SALT_SIZE:
        raise ItemError(
            f"salt is {len(salt)} bytes, at most {MAX_SALT_SIZE}", ErrorCode.SALT_TOO_BIG
        )
    return salt


def _check_seq(seq: int) -> int:
    if isinstance(seq, bool) or not isinstance(seq, int):
        raise TypeError(f"seq must be an int, got {seq!r}")
    if not 0 <= seq <= MAX_SEQ:
        raise ItemError(f"seq {seq} is outside 0..2**63-1")
    return seq


def _check_size(what: str, value: bytes, size: int) -> bytes:
    if not isinstance(value, bytes):
        raise TypeError(f"{what} must be bytes, got {value!r:.80}")
    if len(value) != size:
        raise ItemError(f"{what} is {size} bytes, got {len(value)}")
    return value


def _check_public_key(value: bytes) -> bytes:
    return _check_size("public key", value, PUBLIC_KEY_SIZE)


def _check_signature(value: bytes) -> bytes:
    return _check_size("signature", value, SIGNATURE_SIZE)


def signature_input(seq: int, value: bytes, salt: bytes = b"") -> bytes:
    """What is signed (BEP 44 "Signature Verification"): ``4:salt<len>:<salt>`` when the salt
    is not empty, then ``3:seqi<seq>e1:v`` and the bencoded value, built by concatenation so no
    dictionary ordering or parser quirk can change it."""
    prefix = b"4:salt%d:%s" % (len(salt), salt) if salt else b""
    return prefix + b"3:seqi%de1:v" % seq + value


def mutable_target(public_key: bytes, salt: bytes = b"") -> NodeId:
    """Where a mutable item lives: SHA-1 of the public key followed by the salt."""
    return NodeId.from_bytes(hashlib.sha1(public_key + salt).digest())


def immutable_target(value: bytes) -> NodeId:
    """Where an immutable item lives: SHA-1 of its bencoded value."""
    return NodeId.from_bytes(hashlib.sha1(value).digest())


def public_key_bytes(private_key: Ed25519PrivateKey) -> bytes:
    """The raw 32-byte public key of ``private_key``, as ``k`` carries it."""
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@attrs.frozen
class ImmutableItem:
    """A value stored under its own SHA-1 (BEP 44 "Immutable Items")."""

    value: bytes = attrs.field(converter=_check_value)

    @property
    def target(self) -> NodeId:
        """SHA-1 of the bencoded value."""
        return immutable_target(self.value)


@attrs.frozen
class MutableItem:
    """A value signed by the holder of ``public_key`` (BEP 44 "Mutable Items").

    Construction checks sizes only; `verify` checks the signature, which a storing node MUST do
    before accepting a put and a reader before trusting a get.
    """

    public_key: bytes = attrs.field(converter=_check_public_key)
    seq: int = attrs.field(converter=_check_seq)
    value: bytes = attrs.field(converter=_check_value)
    signature: bytes = attrs.field(converter=_check_signature)
    salt: bytes = attrs.field(default=b"", converter=_check_salt)

    @classmethod
    def sign(
        cls, private_key: Ed25519PrivateKey, value: bytes, seq: int, salt: bytes = b""
    ) -> MutableItem:
        """A new item holding the bencoded ``value`` at ``seq``, signed with ``private_key``."""
        value, seq, salt = _check_value(value), _check_seq(seq), _check_salt(salt)
        signature = private_key.sign(signature_input(seq, value, salt))
        return cls(public_key_bytes(private_key), seq, value, signature, salt)

    @property
    def target(self) -> NodeId:
        """SHA-1 of the public key followed by the salt."""
        return mutable_target(self.public_key, self.salt)

    @property
    def signed_bytes(self) -> bytes:
        """The exact bytes the signature covers."""
        return signature_input(self.seq, self.value, self.salt)

    def verify(self) -> bool:
        """Whether ``signature`` is ``public_key``'s ed25519 signature of `signed_bytes`."""
        try:
            key = Ed25519PublicKey.from_public_bytes(self.public_key)
            key.verify(self.signature, self.signed_bytes)
        except (InvalidSignature, ValueError):
            return False
        return True


Item: TypeAlias = MutableItem | ImmutableItem
