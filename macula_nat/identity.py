"""Node identity: a node id is an ed25519 public key; a node key signs what the node publishes.

- :class:`NodeId` is the public half: a frozen, hashable, ordered value of 32 bytes. Its text
  form is 64 lowercase hex digits (:meth:`NodeId.text`, round-tripped by
  :meth:`NodeId.from_text`); :meth:`NodeId.short` is the first 8 bytes (16 hex digits), a prefix
  of the text form, for logs.
- :class:`NodeKey` is the private half. :meth:`NodeKey.load_or_create` keeps its 32-byte seed in
  a file the user chooses (see :data:`KEY_FILE_HEADER` for the format), created with mode 0600;
  a file others may read, or one that is not a key file, raises :class:`KeyFileError`.
- Every signature a node makes for the protocol is **domain separated**: it signs
  ``b"macula-nat\\0" || len(purpose) || purpose || data`` (:func:`signing_input`), so a signature
  made for one purpose (a relay registration, a directory record) is worthless for any other.
  :class:`SignedEnvelope` carries a payload with its signer and such a signature; the relay and
  the directory both publish through it and verify on read.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import stat
from pathlib import Path
from typing import Final

import attrs
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "KEY_FILE_HEADER",
    "NODE_ID_SIZE",
    "SIGNATURE_SIZE",
    "BadSignature",
    "EnvelopeError",
    "KeyFileError",
    "NodeId",
    "NodeKey",
    "SignedEnvelope",
    "signing_input",
]

logger = logging.getLogger(__name__)

NODE_ID_SIZE: Final = 32
SIGNATURE_SIZE: Final = 64
SEED_SIZE: Final = 32
SHORT_SIZE: Final = 8
"""Bytes of the id shown by :meth:`NodeId.short`."""

KEY_FILE_HEADER: Final = "macula-nat node key v1"
"""First line of a key file; the second is the 32-byte ed25519 seed as 64 hex digits."""

_DOMAIN: Final = b"macula-nat\x00"
_ENVELOPE_VERSION: Final = 1
_ENVELOPE_HEADER: Final = 1 + NODE_ID_SIZE + SIGNATURE_SIZE
_RAW: Final = serialization.Encoding.Raw


class KeyFileError(Exception):
    """A key file that cannot be used: readable by others, not a key file, or not a file."""


class EnvelopeError(ValueError):
    """Bytes that are not an encoded :class:`SignedEnvelope`."""


class BadSignature(Exception):
    """A signature that does not verify (forged, tampered with, other purpose or other signer)."""


def signing_input(purpose: str, data: bytes) -> bytes:
    """The bytes actually signed for ``data`` under ``purpose`` (domain separation).

    ``purpose`` is 1 to 255 bytes of ASCII, e.g. ``"macula-nat/relay-register/v1"``; its length
    prefix keeps ``(purpose, data)`` pairs from colliding.
    """
    try:
        tag = purpose.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError(f"purpose must be ASCII, not {purpose!r}") from None
    if not 1 <= len(tag) <= 255:
        raise ValueError(f"purpose must be 1 to 255 bytes, not {len(tag)}")
    return b"".join((_DOMAIN, bytes((len(tag),)), tag, data))


def _check_id_bytes(_: object, __: attrs.Attribute[bytes], value: bytes) -> None:
    if type(value) is not bytes or len(value) != NODE_ID_SIZE:
        raise ValueError(f"a node id is {NODE_ID_SIZE} bytes, not {value!r}")


@attrs.frozen(order=True, repr=False, cache_hash=True)
class NodeId:
    """A node's public identity: its ed25519 public key (``raw``, 32 bytes).

    ``bytes(node_id)`` gives the raw key. Equality, hashing and order follow the raw bytes.
    """

    raw: bytes = attrs.field(validator=_check_id_bytes)
    _key: Ed25519PublicKey = attrs.field(init=False, eq=False, order=False, hash=False)

    def __attrs_post_init__(self) -> None:
        try:
            key = Ed25519PublicKey.from_public_bytes(self.raw)
        except ValueError as exc:  # not raised by current OpenSSL for any 32 bytes; kept honest
            raise ValueError(f"{self.raw.hex()} is not an ed25519 public key") from exc
        object.__setattr__(self, "_key", key)

    @classmethod
    def from_text(cls, text: str) -> NodeId:
        """Parse :meth:`text` (64 hex digits, either case); ValueError for anything else."""
        if not isinstance(text, str) or len(text) != 2 * NODE_ID_SIZE:
            raise ValueError(f"a node id is {2 * NODE_ID_SIZE} hex digits, not {text!r}")
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise ValueError(f"a node id is hex digits, not {text!r}") from None
        return cls(raw)

    def text(self) -> str:
        """The full printable form: 64 lowercase hex digits."""
        return self.raw.hex()

    def short(self) -> str:
        """The first 8 bytes as 16 hex digits (a prefix of :meth:`text`), for logs."""
        return self.raw[:SHORT_SIZE].hex()

    def verify(self, signature: bytes, data: bytes) -> bool:
        """True if ``signature`` is this key's signature of ``data``; never raises for bad input."""
        if type(signature) is not bytes or len(signature) != SIGNATURE_SIZE:
            return False
        try:
            self._key.verify(signature, data)
        except InvalidSignature:
            return False
        return True

    def verify_for(self, purpose: str, signature: bytes, data: bytes) -> bool:
        """:meth:`verify` of a signature made with :meth:`NodeKey.sign_for` under ``purpose``."""
        return self.verify(signature, signing_input(purpose, data))

    def __bytes__(self) -> bytes:
        return self.raw

    def __reduce__(self) -> tuple[type[NodeId], tuple[bytes]]:
        return NodeId, (self.raw,)  # the parsed key object does not pickle; the bytes do

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        return f"NodeId({self.short()})"


class NodeKey:
    """A node's private key: signs for the node whose id is :attr:`node_id`.

    Build one with :meth:`generate`, :meth:`from_seed`, :meth:`load` or
    :meth:`load_or_create`. The seed is never shown in ``repr``.
    """

    __slots__ = ("_node_id", "_private")

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self._node_id = NodeId(
            private.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw)
        )

    def __repr__(self) -> str:
        return f"NodeKey({self._node_id.short()})"

    @classmethod
    def generate(cls) -> NodeKey:
        """A fresh random key."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> NodeKey:
        """The key of a 32-byte ed25519 seed (RFC 8032 private key)."""
        if type(seed) is not bytes or len(seed) != SEED_SIZE:
            raise ValueError(f"an ed25519 seed is {SEED_SIZE} bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> NodeKey:
        """Read the key file at ``path``; :class:`KeyFileError` if it cannot be used.

        Blocking file I/O: meant for start-up (or ``trio.to_thread.run_sync``).
        """
        path = Path(path)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise KeyFileError(f"{path} is a symbolic link; name the key file itself") from exc
            raise
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise KeyFileError(f"{path} is not a regular file")
            mode = stat.S_IMODE(info.st_mode)
            if mode & 0o077:
                raise KeyFileError(
                    f"{path} has mode {mode:04o}: a node key must be readable by its owner only "
                    f"(chmod 600 {path})"
                )
            content = os.read(fd, 256)
        finally:
            os.close(fd)
        return cls.from_seed(_parse_key_file(path, content))

    @classmethod
    def load_or_create(cls, path: str | os.PathLike[str]) -> NodeKey:
        """The key stored at ``path``, or a new one stored there (mode 0600) if there is none.

        Creation is atomic and never overwrites: when two processes race, both end up with the
        key the first one stored. Blocking file I/O, like :meth:`load`.
        """
        path = Path(path)
        if path.exists() or path.is_symlink():
            return cls.load(path)
        key = cls.generate()
        if key._store_new(path):
            logger.info("created node key %s at %s", key.node_id.short(), path)
            return key
        return cls.load(path)

    @property
    def node_id(self) -> NodeId:
        return self._node_id

    @property
    def private_key(self) -> Ed25519PrivateKey:
        """The key itself, for what must hold it (the TLS stack of QUIC connections)."""
        return self._private

    def sign(self, data: bytes) -> bytes:
        """The raw ed25519 signature of ``data`` (64 bytes); prefer :meth:`sign_for`."""
        return self._private.sign(data)

    def sign_for(self, purpose: str, data: bytes) -> bytes:
        """Sign ``data`` for ``purpose`` only (see :func:`signing_input`)."""
        return self._private.sign(signing_input(purpose, data))

    def _seed(self) -> bytes:
        return self._private.private_bytes(
            _RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )

    def _store_new(self, path: Path) -> bool:
        """Write this key to ``path`` unless a file is there; False if one was."""
        content = f"{KEY_FILE_HEADER}\n{self._seed().hex()}\n".encode("ascii")
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(content)
                file.flush()
                os.fsync(file.fileno())
            try:
                os.link(temporary, path)  # atomic, and fails rather than overwrite
            except FileExistsError:
                return False
        finally:
            temporary.unlink(missing_ok=True)
        return True


def _parse_key_file(path: Path, content: bytes) -> bytes:
    lines = content.split(b"\n")
    if (
        len(lines) not in (2, 3)
        or lines[0] != KEY_FILE_HEADER.encode()
        or (len(lines) == 3 and lines[2] != b"")
        or len(lines[1]) != 2 * SEED_SIZE
    ):
        raise KeyFileError(f"{path} is not a macula-nat node key file (corrupt or truncated?)")
    try:
        return bytes.fromhex(lines[1].decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise KeyFileError(f"{path} holds a corrupt node key (not hex digits)") from None


@attrs.frozen
class SignedEnvelope:
    """A payload, who signed it, and the signature, for one purpose.

    The purpose is not carried: the reader names the purpose it expects, so an envelope made for
    one use never verifies for another. Wire form (:meth:`encode`): version 1 (1 byte), signer
    (32), signature (64), payload.
    """

    payload: bytes
    signer: NodeId
    signature: bytes

    @classmethod
    def sign(cls, key: NodeKey, purpose: str, payload: bytes) -> SignedEnvelope:
        return cls(payload, key.node_id, key.sign_for(purpose, payload))

    def verify(self, purpose: str, signer: NodeId | None = None) -> bool:
        """True if signed by ``signer`` (any signer if None) for ``purpose``; never raises."""
        if signer is not None and signer != self.signer:
            return False
        return self.signer.verify_for(purpose, self.signature, self.payload)

    def open(self, purpose: str, signer: NodeId | None = None) -> bytes:
        """The payload if the envelope verifies (see :meth:`verify`), else :class:`BadSignature`."""
        if not self.verify(purpose, signer):
            expected = f" by {signer.short()}" if signer is not None else ""
            raise BadSignature(
                f"envelope from {self.signer.short()} is not signed{expected} for {purpose!r}"
            )
        return self.payload

    def encode(self) -> bytes:
        return b"".join(
            (bytes((_ENVELOPE_VERSION,)), self.signer.raw, self.signature, self.payload)
        )

    @classmethod
    def decode(cls, data: bytes) -> SignedEnvelope:
        """Parse :meth:`encode`'s output (not verified yet); :class:`EnvelopeError` otherwise."""
        if len(data) < _ENVELOPE_HEADER:
            raise EnvelopeError(f"a signed envelope is at least {_ENVELOPE_HEADER} bytes")
        if data[0] != _ENVELOPE_VERSION:
            raise EnvelopeError(f"unknown signed envelope version {data[0]}")
        signer = NodeId(bytes(data[1 : 1 + NODE_ID_SIZE]))
        signature = bytes(data[1 + NODE_ID_SIZE : _ENVELOPE_HEADER])
        return cls(bytes(data[_ENVELOPE_HEADER:]), signer, signature)
