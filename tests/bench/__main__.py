"""``make bench``: every benchmark, side by side with its baseline, in one run."""

from __future__ import annotations

import logging

import trio

from . import actors, cache, connections, detection, dht, observer, relay


async def main() -> None:
    logging.disable(logging.CRITICAL)  # crash reports of provoked crashes are not figures
    for module in (actors, cache, observer, relay, dht, detection, connections):
        for figure in await module.run():
            print(figure.render(), flush=True)


trio.run(main)
