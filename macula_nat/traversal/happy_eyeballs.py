"""Which of a peer's addresses a punch probes, and when: IPv6 first, IPv4 after a head start.

Happy Eyeballs (RFC 8305) for hole punching. A dual-stack pair may have a path over both IP
versions; IPv6 is preferred where it works (no NAT state to keep alive, no carrier NAT), so its
addresses are probed from the first round and IPv4 ones only once ``head_start`` seconds have
passed without a proof. Every address keeps being probed after that and the first path proven
both ways wins, so a broken IPv6 path costs the head start and nothing more. Addresses of a
version the socket cannot send to are left out. Pure: the caller passes the elapsed time.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from macula_nat.net.address import Address, ip_version

__all__ = ["due", "reachable"]


def reachable(targets: Sequence[Address], versions: Collection[int]) -> tuple[Address, ...]:
    """``targets`` of the IP ``versions`` the socket sends to, in order."""
    return tuple(target for target in targets if ip_version(target[0]) in versions)


def due(targets: Sequence[Address], elapsed: float, head_start: float) -> tuple[Address, ...]:
    """The targets to probe ``elapsed`` seconds into a punch: every IPv6 one, and the IPv4 ones
    once the head start is over (at once when no IPv6 target races them). Order is kept."""
    if elapsed >= head_start or all(ip_version(ip) == 4 for ip, _ in targets):
        return tuple(targets)
    return tuple(target for target in targets if ip_version(target[0]) == 6)
