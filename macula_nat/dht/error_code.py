"""KRPC error codes: BEP 5 "Errors" (201-204) and BEP 44 "Errors" (205-207, 301, 302)."""

from __future__ import annotations

import enum

__all__ = ["ErrorCode"]


class ErrorCode(enum.IntEnum):
    """The first element of a KRPC error's ``e`` list."""

    GENERIC = 201
    SERVER = 202
    PROTOCOL = 203
    """Malformed packet, invalid arguments or bad token."""
    METHOD_UNKNOWN = 204
    MESSAGE_TOO_BIG = 205
    """BEP 44: the bencoded ``v`` is over 1000 bytes."""
    INVALID_SIGNATURE = 206
    SALT_TOO_BIG = 207
    """BEP 44: ``salt`` is over 64 bytes."""
    CAS_MISMATCH = 301
    """BEP 44: ``cas`` does not match the stored sequence number; re-read and retry."""
    SEQUENCE_TOO_OLD = 302
    """BEP 44: ``seq`` is not newer than the stored one."""

    @property
    def phrase(self) -> str:
        """A short message for the code, as the BEPs word it."""
        return _PHRASES[self]


_PHRASES = {
    ErrorCode.GENERIC: "Generic Error",
    ErrorCode.SERVER: "Server Error",
    ErrorCode.PROTOCOL: "Protocol Error",
    ErrorCode.METHOD_UNKNOWN: "Method Unknown",
    ErrorCode.MESSAGE_TOO_BIG: "Message too big",
    ErrorCode.INVALID_SIGNATURE: "Invalid signature",
    ErrorCode.SALT_TOO_BIG: "Salt too big",
    ErrorCode.CAS_MISMATCH: "CAS mismatch",
    ErrorCode.SEQUENCE_TOO_OLD: "Sequence number less than current",
}
