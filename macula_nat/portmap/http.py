"""A tiny HTTP/1.1 client for UPnP on Trio: one request per connection, bounded in size.

h11 (python-hyper's sans-IO HTTP/1.1, already installed with hypercorn) does the framing; this
module only moves bytes. Callers bound the time with a Trio cancel scope; the size of what is
read is capped here, so a device that streams forever costs at most ``max_size`` bytes.
"""

from __future__ import annotations

from typing import Final

import h11
import trio

from .errors import PortMapDecodeError

MAX_BODY: Final = 64 * 1024
_CHUNK: Final = 4096


async def request(
    method: str,
    host: str,
    port: int,
    path: str,
    *,
    body: bytes = b"",
    headers: tuple[tuple[str, str], ...] = (),
    max_size: int = MAX_BODY,
) -> tuple[int, bytes]:
    """``(status, body)`` of one request to ``host:port``. Raises OSError when the device
    cannot be reached and :class:`PortMapDecodeError` for a malformed or oversized answer."""
    connection = h11.Connection(our_role=h11.CLIENT, max_incomplete_event_size=max_size)
    all_headers = [("Host", f"{host}:{port}"), ("Connection", "close"), *headers]
    if body or method == "POST":
        all_headers.append(("Content-Length", str(len(body))))
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        out = connection.send(h11.Request(method=method, target=path, headers=all_headers))
        out += connection.send(h11.Data(data=body)) if body else b""
        out += connection.send(h11.EndOfMessage())
        await stream.send_all(out)
        status: int | None = None
        received = bytearray()
        read = 0
        while True:
            try:
                event = connection.next_event()
            except h11.RemoteProtocolError as exc:
                raise PortMapDecodeError(f"HTTP answer from {host}:{port}: {exc}") from None
            if event is h11.NEED_DATA:
                data = await stream.receive_some(_CHUNK)
                read += len(data)
                if read > max_size + _CHUNK:
                    raise PortMapDecodeError(f"HTTP answer from {host}:{port} over {max_size} B")
                connection.receive_data(data)
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                received += event.data
                if len(received) > max_size:
                    raise PortMapDecodeError(f"HTTP body from {host}:{port} over {max_size} B")
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                break
        if status is None:
            raise PortMapDecodeError(f"HTTP answer from {host}:{port} ended before its status")
        return status, bytes(received)
