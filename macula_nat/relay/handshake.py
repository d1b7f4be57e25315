"""Registration, sans-IO: how a node proves it holds its key and gets a link to its relay.

::

    node                                              relay
    HELLO(client nonce, node id)          ->
                                          <-  CHALLENGE(client nonce, relay id, cookie, observed)
    REGISTER(client nonce, node id, cookie, node ephemeral, observed,
             sig_node(relay id, node id, nonce, cookie, ephemeral, observed)) ->
                                          <-  REGISTERED(client nonce, registration, relay
                                              ephemeral, ttl, observed, sig_relay(transcript))

- The **cookie** is stateless (as DTLS's HelloVerifyRequest and QUIC's Retry): a timestamp and an
  HMAC under a secret only the relay knows, over the timestamp, the node id and the address the
  HELLO came from. A flood of HELLOs costs the relay no memory, and only a sender that receives
  at its claimed address can present a valid cookie, so REGISTER (the one frame that costs the
  relay public-key work) is never processed for a spoofed source. Cookies live
  ``lifetime`` seconds.
- The node signs (domain separated, :data:`REGISTER_PURPOSE`) the relay's id, the cookie, its
  observed address and its ephemeral X25519 key: proof of key possession that cannot be replayed
  to another relay, at another time, or from another address.
- The relay answers with its own ephemeral key and signs the whole exchange
  (:data:`REGISTERED_PURPOSE`), so the node knows it registered with the relay it meant (when it
  knows the relay's id; otherwise it trusts the id in the first CHALLENGE).
- Both derive the link's direction keys from the X25519 secret (:func:`~.link.derive_keys`).
  Ephemeral keys give forward secrecy: recorded traffic stays unauthenticatable later.
"""

from __future__ import annotations

import enum
import hmac
import secrets
import struct
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from macula_nat.identity import NodeId, NodeKey
from macula_nat.net.address import Address

from .frames import (
    COOKIE_SIZE,
    NONCE_SIZE,
    Challenge,
    Hello,
    Reason,
    Refused,
    Register,
    Registered,
    encode_address,
)
from .link import Link, derive_keys

__all__ = [
    "REGISTERED_PURPOSE",
    "REGISTER_PURPOSE",
    "ClientHandshake",
    "CookieJar",
    "CookieVerdict",
    "accept_registration",
    "register_transcript",
    "registered_transcript",
]

REGISTER_PURPOSE: Final = "macula-nat/relay-register/v1"
REGISTERED_PURPOSE: Final = "macula-nat/relay-registered/v1"

_STAMP: Final = struct.Struct(">q")
_MAC_SIZE: Final = COOKIE_SIZE - _STAMP.size
_RAW: Final = serialization.Encoding.Raw
_RAW_PUBLIC: Final = serialization.PublicFormat.Raw


class CookieVerdict(enum.Enum):
    VALID = "valid"
    STALE = "stale"
    """Made by this relay, but too old (or from the future)."""
    FORGED = "forged"
    """Not made by this relay for this node and address."""


class CookieJar:
    """Makes and checks stateless challenge cookies: an 8-byte millisecond timestamp and a
    16-byte HMAC-SHA256 tag over it, the node id and the source address."""

    __slots__ = ("_secret", "lifetime")

    def __init__(self, lifetime: float = 30.0, secret: bytes | None = None) -> None:
        if not lifetime > 0:
            raise ValueError(f"lifetime must be positive, not {lifetime!r}")
        self.lifetime = lifetime
        self._secret = secret if secret is not None else secrets.token_bytes(32)

    def _mac(self, stamp: bytes, node_id: NodeId, source: Address) -> bytes:
        message = b"".join((stamp, node_id.raw, encode_address(source)))
        return hmac.digest(self._secret, message, "sha256")[:_MAC_SIZE]

    def issue(self, node_id: NodeId, source: Address, now: float) -> bytes:
        stamp = _STAMP.pack(round(now * 1000))
        return stamp + self._mac(stamp, node_id, source)

    def check(self, cookie: bytes, node_id: NodeId, source: Address, now: float) -> CookieVerdict:
        stamp = cookie[: _STAMP.size]
        if not hmac.compare_digest(self._mac(stamp, node_id, source), cookie[_STAMP.size :]):
            return CookieVerdict.FORGED
        age = now - _STAMP.unpack(stamp)[0] / 1000
        if not -1.0 <= age <= self.lifetime:  # a second of slack for rounding
            return CookieVerdict.STALE
        return CookieVerdict.VALID

    @staticmethod
    def issued_at(cookie: bytes) -> float:
        """When a (valid) cookie was made, in the relay's clock seconds."""
        return float(_STAMP.unpack(cookie[: _STAMP.size])[0]) / 1000


def register_transcript(relay_id: NodeId, register: Register) -> bytes:
    """What a node signs in REGISTER."""
    return b"".join(
        (
            relay_id.raw,
            register.node_id.raw,
            register.client_nonce,
            register.cookie,
            register.ephemeral,
            encode_address(register.observed),
        )
    )


def registered_transcript(relay_id: NodeId, register: Register, registered: Registered) -> bytes:
    """What a relay signs in REGISTERED: the node's REGISTER and its own answer."""
    return b"".join(
        (
            register_transcript(relay_id, register),
            registered.registration.to_bytes(4, "big"),
            registered.ephemeral,
            registered.ttl.to_bytes(4, "big"),
            encode_address(registered.observed),
        )
    )


def _public_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(_RAW, _RAW_PUBLIC)


def _shared_secret(private: X25519PrivateKey, peer_public: bytes) -> bytes | None:
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError:  # a low-order point: the exchange would yield all zeros
        return None


def accept_registration(
    relay_key: NodeKey, register: Register, registration: int, ttl: int
) -> tuple[Registered, Link] | None:
    """The relay's REGISTERED and link for a REGISTER whose cookie checked out.

    None if the node's signature does not verify or its ephemeral key is unusable.
    """
    relay_id = relay_key.node_id
    if not register.node_id.verify_for(
        REGISTER_PURPOSE, register.signature, register_transcript(relay_id, register)
    ):
        return None
    ephemeral = X25519PrivateKey.generate()
    shared = _shared_secret(ephemeral, register.ephemeral)
    if shared is None:
        return None
    unsigned = Registered(
        register.client_nonce,
        registration,
        _public_bytes(ephemeral),
        ttl,
        register.observed,
        bytes(64),
    )
    signature = relay_key.sign_for(
        REGISTERED_PURPOSE, registered_transcript(relay_id, register, unsigned)
    )
    keys = derive_keys(
        shared,
        client_nonce=register.client_nonce,
        cookie=register.cookie,
        node_id=register.node_id,
        relay_id=relay_id,
        registration=registration,
    )
    answer = Registered(
        register.client_nonce, registration, unsigned.ephemeral, ttl, register.observed, signature
    )
    return answer, Link.for_relay(registration, keys)


class ClientHandshake:
    """The node's side of one registration attempt.

    ``relay_id`` is the relay the node means to register with; None trusts the id the first
    CHALLENGE names. Frames that do not echo this attempt's client nonce are ignored (None), so
    an off-path attacker cannot answer for the relay.
    """

    __slots__ = ("_ephemeral", "_key", "_register", "client_nonce", "relay_id")

    def __init__(self, key: NodeKey, relay_id: NodeId | None = None) -> None:
        self._key = key
        self.relay_id = relay_id
        self.client_nonce = secrets.token_bytes(NONCE_SIZE)
        self._ephemeral = X25519PrivateKey.generate()
        self._register: Register | None = None

    def hello(self) -> Hello:
        return Hello(self.client_nonce, self._key.node_id)

    def on_challenge(self, challenge: Challenge) -> Register | None:
        """The REGISTER answering ``challenge``, or None if it is not for this attempt."""
        if challenge.client_nonce != self.client_nonce:
            return None
        if self.relay_id is None:
            self.relay_id = challenge.relay_id
        elif challenge.relay_id != self.relay_id:
            return None
        unsigned = Register(
            self.client_nonce,
            self._key.node_id,
            challenge.cookie,
            _public_bytes(self._ephemeral),
            challenge.observed,
            bytes(64),
        )
        signature = self._key.sign_for(
            REGISTER_PURPOSE, register_transcript(self.relay_id, unsigned)
        )
        self._register = Register(
            unsigned.client_nonce,
            unsigned.node_id,
            unsigned.cookie,
            unsigned.ephemeral,
            unsigned.observed,
            signature,
        )
        return self._register

    def on_registered(self, registered: Registered) -> Link | None:
        """The link, if ``registered`` answers this attempt's REGISTER and the relay signed it."""
        register = self._register
        if register is None or self.relay_id is None:
            return None
        if registered.client_nonce != self.client_nonce:
            return None
        transcript = registered_transcript(self.relay_id, register, registered)
        if not self.relay_id.verify_for(REGISTERED_PURPOSE, registered.signature, transcript):
            return None
        shared = _shared_secret(self._ephemeral, registered.ephemeral)
        if shared is None:
            return None
        keys = derive_keys(
            shared,
            client_nonce=self.client_nonce,
            cookie=register.cookie,
            node_id=self._key.node_id,
            relay_id=self.relay_id,
            registration=registered.registration,
        )
        return Link.for_node(registered.registration, keys)

    def on_refused(self, refused: Refused) -> Reason | None:
        """The reason, if ``refused`` echoes this attempt's nonce."""
        return refused.reason if refused.client_nonce == self.client_nonce else None
