"""Why a connection could not be made or did not last."""

from __future__ import annotations

__all__ = ["ConnectionClosed", "ConnectionFailed", "HandshakeTimeout", "PeerAuthenticationFailed"]


class ConnectionFailed(Exception):
    """Base of every connection failure."""


class PeerAuthenticationFailed(ConnectionFailed):
    """The peer's certificate is missing or is not the node expected, or the peer refused ours."""


class HandshakeTimeout(ConnectionFailed, TimeoutError):
    """The handshake did not complete in time (peer silent, unreachable or too slow)."""


class ConnectionClosed(ConnectionFailed):
    """The connection ended: closed by the peer, idle timeout, protocol error or lost socket."""
