"""Has the gateway forgotten its mappings? The epoch check of RFC 6886 3.6 and RFC 6887 8.5.

Every NAT-PMP and PCP answer carries the server's epoch: seconds since its mapping state began.
A client compares it with the last one it saw plus the time that passed on its own clock; an
epoch that fell behind means the gateway rebooted or lost its table, and every mapping must be
requested again.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class EpochSample:
    """An answer's epoch and the client's clock (seconds, any origin) when it arrived."""

    server: int
    client: float


def epoch_reset(previous: EpochSample | None, current: EpochSample) -> bool:
    """True when ``current`` shows the gateway lost its state since ``previous``.

    RFC 6886 3.6: the epoch should have grown by at least 7/8 of the client's elapsed time, with
    2 seconds of slack; RFC 6887 8.5 also treats an epoch more than a second behind the last as
    a reset."""
    if previous is None:
        return False
    if current.server + 1 < previous.server:
        return True
    elapsed = max(0.0, current.client - previous.client)
    expected = previous.server + elapsed * 7 / 8
    return current.server + 2 < expected
