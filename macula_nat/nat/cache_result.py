"""What a profile cache read found: the Erlang ``{ok, P}``, ``{stale, P}`` and
``{error, not_found}``, one record each, for ``match``::

    match nat_cache.get(node_id):
        case Fresh(profile): ...
        case Stale(profile): ...      # served while the cache revalidates it
        case NotFound(): ...
"""

from __future__ import annotations

from typing import Final, Literal, TypeAlias

import attrs

from .lru import Lookup, LookupState
from .profile import NatProfile

__all__ = ["CacheResult", "Fresh", "NotFound", "Stale", "result_of"]


@attrs.frozen
class Fresh:
    """``{ok, Profile}``: cached and within its TTL."""

    profile: NatProfile

    @property
    def state(self) -> Literal[LookupState.FRESH]:
        return LookupState.FRESH

    @property
    def value(self) -> NatProfile:
        return self.profile

    @property
    def found(self) -> bool:
        return True


@attrs.frozen
class Stale:
    """``{stale, Profile}``: past its TTL, served while one background lookup revalidates it."""

    profile: NatProfile

    @property
    def state(self) -> Literal[LookupState.STALE]:
        return LookupState.STALE

    @property
    def value(self) -> NatProfile:
        return self.profile

    @property
    def found(self) -> bool:
        return True


@attrs.frozen
class NotFound:
    """``{error, not_found}``: not cached (and, where a lookup was made, not in the directory)."""

    @property
    def state(self) -> Literal[LookupState.MISSING]:
        return LookupState.MISSING

    @property
    def value(self) -> None:
        return None

    @property
    def found(self) -> bool:
        return False


CacheResult: TypeAlias = Fresh | Stale | NotFound

NOT_FOUND: Final = NotFound()


def result_of(lookup: Lookup[NatProfile]) -> CacheResult:
    """The record for what the table's lookup found."""
    if lookup.value is None:
        return NOT_FOUND
    if lookup.state is LookupState.FRESH:
        return Fresh(lookup.value)
    if lookup.state is LookupState.STALE:
        return Stale(lookup.value)
    return NOT_FOUND
