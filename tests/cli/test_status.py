"""``macula-nat status`` and ``--web`` on ``gateway`` and ``demo``: the pages they serve.

Nodes live on the simulated internet; the pages are served by hypercorn on 127.0.0.1 (real
sockets, so these run on the real clock: the sim's links take 5 ms)."""

from __future__ import annotations

import functools
import logging
from typing import Any

import attrs
import httpx
import pytest
import trio
from trio.testing import MockClock

from macula_nat.cli import build_parser
from macula_nat.cli.gateway import gateway_main
from macula_nat.cli.status import status_config, status_main
from macula_nat.demo import nat as nat_demo
from macula_nat.dht.config import DhtConfig
from macula_nat.gateway import GatewayConfig
from macula_nat.identity import NodeKey
from macula_nat.net.sim import LinkProfile, Preset, add_site, open_internet
from macula_nat.web import DemoBoard

PRIMARY = ("198.51.100.10", 3478)
ALTERNATE = ("198.51.100.11", 3479)
LOOPBACK = ("127.0.0.1", 0)


async def get_json(url: str) -> Any:
    async with httpx.AsyncClient(timeout=10.0) as http:
        response = await http.get(url)
        response.raise_for_status()
        return response.json()


def test_status_takes_the_node_options() -> None:
    args = build_parser().parse_args(
        [
            *("status", "--listen", "127.0.0.1:8090", "--gateway", "198.51.100.10:3478"),
            *("--bootstrap", "198.51.100.10:3481", "--node", "0.0.0.0:4000"),
        ]
    )
    assert args.listen == ("127.0.0.1", 8090)
    config = status_config(args, NodeKey.generate())
    assert config.observers == (PRIMARY,)
    assert config.dht == DhtConfig(bootstrap=(("198.51.100.10", 3481),))
    assert config.listen == ("0.0.0.0", 4000)
    default = build_parser().parse_args(
        ["status", "--observer", "198.51.100.10:3478", "--bootstrap", "198.51.100.10:3481"]
    )
    assert default.listen == ("127.0.0.1", 8080)


async def test_status_and_gateway_serve_their_pages(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="macula_nat.web.serve")
    gateway_config = GatewayConfig(listen=PRIMARY, alternate=ALTERNATE)
    with trio.fail_after(30):
        async with open_internet(seed=4) as internet, trio.open_nursery() as nursery:
            gateway_host = internet.add_host(
                [PRIMARY[0], ALTERNATE[0]], link=LinkProfile(latency=0.005)
            )
            gateway_key = NodeKey.generate()
            await nursery.start(
                functools.partial(
                    gateway_main, gateway_config, gateway_key, stack=gateway_host, web=LOOPBACK
                )
            )
            args = build_parser().parse_args(
                [
                    *("status", "--listen", "127.0.0.1:0", "--observer", "198.51.100.10:3478"),
                    *("--bootstrap", "198.51.100.10:3481"),
                ]
            )
            site = add_site(internet.public, Preset.RESTRICTED_CONE)
            config = attrs.evolve(status_config(args, NodeKey.generate()), stack=site.host)
            system, url = await nursery.start(status_main, config, args.listen)
            await system.wait_ready()  # detected, and registered with its home relay
            node = await get_json(url + "snapshot")
            assert node["node_id"] == system.node_id.text()
            assert node["profile"]["nat_type"] == "restricted cone"
            assert "DHT" in node["figures"]
            async with httpx.AsyncClient(timeout=10.0) as http:
                assert "<title>macula-nat status</title>" in (await http.get(url)).text

            # The gateway's page (its URL is logged), with its observer's figures.
            [gateway_url] = [
                r.args[0]
                for r in caplog.records
                if r.name == "macula_nat.web.serve" and r.args and r.args[0] != url  # type: ignore[index]
            ]
            gateway = await get_json(gateway_url + "snapshot")
            assert gateway["node_id"] == gateway_key.node_id.text()
            assert gateway["figures"]["observer"]["answered"] > 0  # the node's detection
            assert gateway["relay"]["figures"]["registrations"] == 1  # the node's home relay
            nursery.cancel_scope.cancel()


async def test_the_demo_reports_every_node_and_pair_to_its_observer(
    autojump_clock: MockClock,
) -> None:
    board = DemoBoard([nat_demo.node_name(p) for p in nat_demo.NAT_TYPES])
    lines: list[str] = []
    result = await nat_demo.run(lines.append, observer=board)
    matrix = await board.snapshot()
    assert matrix["done"] == matrix["pairs"] == len(result.rows) == 36
    assert all(matrix["detected"].values())
    for row in result.rows:
        a = nat_demo.NAT_TYPES.index(row.local)
        b = nat_demo.NAT_TYPES.index(row.remote)
        assert matrix["cells"][a][b] == matrix["cells"][b][a] == str(row.method)
    # make run's output is the same with or without a page (punch times vary run to run).
    silent: list[str] = []
    await nat_demo.run(silent.append)
    assert len(silent) == len(lines)
    assert [line.split()[:2] for line in silent] == [line.split()[:2] for line in lines]
