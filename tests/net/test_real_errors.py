"""How the real endpoint maps socket errors onto the interface's rules.

Only loopback may be used here, and loopback never reports an unreachable network, so a stand-in
socket raises those errors.
"""

from __future__ import annotations

import errno
import socket
from typing import cast

import pytest

from macula_nat.net import Address
from macula_nat.net.real import RealUdpEndpoint


class FailingSocket:
    """Enough of a non-blocking socket for ``RealUdpEndpoint``; every send fails with
    ``code``."""

    def __init__(self, code: int) -> None:
        self.code = code
        self.sends = 0

    def getsockname(self) -> tuple[str, int, int, int]:
        return ("::0001", 4000, 0, 0)

    def setblocking(self, flag: bool) -> None:
        pass

    def sendto(self, data: bytes, address: Address) -> int:
        self.sends += 1
        raise OSError(self.code, "simulated")

    def close(self) -> None:
        pass


def endpoint(code: int) -> tuple[RealUdpEndpoint, FailingSocket]:
    sock = FailingSocket(code)
    return RealUdpEndpoint(cast(socket.socket, sock)), sock


@pytest.mark.parametrize(
    "code", [errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ECONNREFUSED, errno.ENOBUFS]
)
async def test_unreachable_destinations_lose_the_datagram_quietly(code: int) -> None:
    real, sock = endpoint(code)

    await real.send_to(b"x", ("2001:db8::1", 9))

    assert sock.sends == 1
    assert real.local_address == ("::1", 4000)


@pytest.mark.parametrize("code", [errno.EACCES, errno.EMSGSIZE, errno.EBADF])
async def test_other_send_errors_propagate(code: int) -> None:
    real, _ = endpoint(code)

    with pytest.raises(OSError) as raised:
        await real.send_to(b"x", ("2001:db8::1", 9))
    assert raised.value.errno == code
