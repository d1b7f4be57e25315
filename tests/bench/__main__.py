"""``make bench``: every benchmark, side by side with its baseline, in one run."""

from __future__ import annotations

import logging

import trio

from . import (
    actors,
    attack_dht,
    attack_load,
    attack_paths,
    attack_quic,
    attack_relay,
    cache,
    capacity,
    connections,
    detection,
    dht,
    dht_scale,
    observer,
    portmap,
    quic_backends,
    relay,
    relay_tcp,
    startup,
)

SECTIONS = (
    (
        "speed and memory",
        (
            startup,
            actors,
            cache,
            observer,
            relay,
            relay_tcp,
            dht,
            dht_scale,
            capacity,
            detection,
            connections,
            quic_backends,
            portmap,
        ),
    ),
    (
        "under attack (issue 11: each figure beside its bound)",
        (
            attack_quic,
            attack_relay,
            attack_dht,
            attack_paths,
            attack_load,
        ),
    ),
)


async def main() -> None:
    logging.disable(logging.CRITICAL)  # crash reports of provoked crashes are not figures
    for title, modules in SECTIONS:
        print(f"== {title}", flush=True)
        for module in modules:
            for figure in await module.run():
                print(figure.render(), flush=True)


trio.run(main)
