"""The directory interface: where nodes publish their NAT profile and find each other's.

Two backends sit behind it: the embedded, in-process one (:mod:`.embedded`) and, later, the
Mainline DHT, whose records are signed BEP 44 items under each node's own key. The method names
follow that model: a node *publishes* its record and *resolves* another node's. Node ids are
strings for now.
"""

from __future__ import annotations

import abc

from macula_nat.nat.profile import NatProfile


class DirectoryError(Exception):
    """The directory could not answer (unreachable, timed out, or none configured).

    Distinct from "no record": :meth:`Directory.resolve_profile` returns None for that.
    """


class Directory(abc.ABC):
    """Publish and resolve NAT profiles by node id. Every method is a Trio checkpoint."""

    @abc.abstractmethod
    async def publish_profile(self, node_id: str, profile: NatProfile, ttl: float) -> None:
        """Make ``profile`` resolvable under ``node_id`` for ``ttl`` seconds, replacing any
        earlier record. A backend that signs records accepts only the ids it holds keys for.

        Raises :class:`DirectoryError` when the directory cannot be reached and ValueError for a
        ``ttl`` that is not positive.
        """

    @abc.abstractmethod
    async def resolve_profile(self, node_id: str) -> NatProfile | None:
        """The live profile published under ``node_id``, or None if there is none.

        Raises :class:`DirectoryError` when the directory cannot be reached. A backend that
        verifies records never returns one that fails verification.
        """
