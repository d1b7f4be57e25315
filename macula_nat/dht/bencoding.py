"""Typed entry points to fastbencode, which decodes only canonical bencoding.

Strictness matters here: sorted keys, no leading zeros and no trailing bytes mean that
re-encoding a decoded value gives back the bytes that arrived, which BEP 44 signatures need.
"""

from __future__ import annotations

# fastbencode re-exports these from its compiled module without declaring them.
from fastbencode import Bencached, bdecode, bencode  # type: ignore[attr-defined]

__all__ = ["decode", "encode", "preencoded"]


def encode(value: object) -> bytes:
    """``value`` bencoded. TypeError or ValueError for what bencoding cannot carry."""
    encoded: bytes = bencode(value)
    return encoded


def decode(data: bytes) -> object:
    """The value that ``data`` holds. Raises fastbencode's errors (ValueError and others)."""
    decoded: object = bdecode(data)
    return decoded


def preencoded(encoded: bytes) -> object:
    """A marker that makes `encode` insert ``encoded`` verbatim (an item's value)."""
    return Bencached(encoded)
