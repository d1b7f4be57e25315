"""Serving a status page with hypercorn's Trio worker, inside the caller's nursery."""

from __future__ import annotations

import logging

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from hypercorn.typing import Framework

from macula_nat.net.address import Address
from macula_nat.web.snapshot import address_text

__all__ = ["serve_page"]

logger = logging.getLogger(__name__)


async def serve_page(
    page: Framework,
    address: Address,
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the ASGI app ``page`` on ``address`` (port 0: any free port) until cancelled;
    with ``nursery.start`` it reports the page's URL (``http://ip:port/``)."""
    config = Config()
    config.bind = [address_text(address) or ""]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")  # through the program's logging
    config.graceful_timeout = 1.0
    config.keep_alive_timeout = 5.0
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(serve, page, config)
        url = binds[0].rstrip("/") + "/"
        logger.info("status page on %s", url)
        task_status.started(url)
