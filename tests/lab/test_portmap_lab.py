"""Port mapping on real NATs (Linux network namespaces, nftables).

Debian's ``miniupnpd`` (nftables build) in a symmetric NAT router's namespace, UPnP IGD, NAT-PMP
and PCP each in turn: the node's PortMapper (``tests/lab/portmap_probe.py``, in the host's
namespace) finds the gateway from the host's route table and speaks each protocol to the
daemon. miniupnpd 2.3.1 refuses to forward on a reserved WAN address ("Port forwarding is
impossible"), and every address the lab may use is reserved (203.0.113.0/24 documentation,
10/8, 100.64/10), so the daemon answers every request and refuses every mapping: those tests
check the protocols interoperate and that the refusal is a clear line with no mapping, no crash
and nothing left on the router (the node then punches or relays as before).

The direct connection is then shown on the same real NATs with a mapping daemon of our own in
the router (``tests/lab/pmp_router.py``: UPnP IGD, NAT-PMP or PCP, the latter two the library's
sans-IO server side, each mapping an nftables DNAT rule as miniupnpd makes them): for each
protocol a symmetric <-> symmetric pair with mapping on one side connects direct, and the
mapping is gone from the router after the node stops.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trio

from macula_nat.portmap.client import Protocol
from tests.lab.connect_support import ChatNode, gateway_arguments
from tests.lab.gateway_support import start_cli_gateway, wait_for_log
from tests.nat_lab import Host, NatPreset, Router, open_lab
from tests.nat_lab.topology import LAN_IF, WAN_IF

pytestmark = pytest.mark.lab

HTTP_PORT = 5555
TABLE = "lab_upnp"
NFT = f"""table inet {TABLE} {{
  chain forward {{
    type filter hook forward priority filter - 1; policy accept;
    jump miniupnpd
  }}
  chain miniupnpd {{
  }}
  chain prerouting {{
    type nat hook prerouting priority dstnat - 1; policy accept;
    jump prerouting_miniupnpd
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat - 1; policy accept;
    jump postrouting_miniupnpd
  }}
  chain prerouting_miniupnpd {{
  }}
  chain postrouting_miniupnpd {{
  }}
}}
add rule inet lab_filter input iifname "{LAN_IF}" udp dport {{ 1900, 5351 }} accept
add rule inet lab_filter input iifname "{LAN_IF}" tcp dport {HTTP_PORT} accept
"""
"""miniupnpd's chains (as its ``nft_init.sh`` makes them, in a table of the lab's own) and the
router's firewall opened to its three services from the LAN only."""

EXPECTED = {
    Protocol.UPNP: ("no usable external address", "GET /rootDesc.xml"),
    Protocol.NATPMP: ("NAT-PMP refused: network_failure", "NAT-PMP public address request"),
    Protocol.PCP: ("MAP at 10.0.1.1: no_resources", "PCP MAP: failed to add mapping"),
}
"""What the node logs, and what the daemon logs, for each protocol."""


def config(protocol: Protocol) -> str:
    upnp = protocol is Protocol.UPNP
    return "\n".join([
        f"ext_ifname={WAN_IF}", f"listening_ip={LAN_IF}", f"http_port={HTTP_PORT}",
        f"enable_natpmp={'no' if upnp else 'yes'}", f"enable_upnp={'yes' if upnp else 'no'}",
        "secure_mode=yes", "system_uptime=yes", "min_lifetime=120", "max_lifetime=86400",
        f"upnp_table_name={TABLE}", f"upnp_nat_table_name={TABLE}",
        "upnp_forward_chain=miniupnpd", "upnp_nat_chain=prerouting_miniupnpd",
        "upnp_nat_postrouting_chain=postrouting_miniupnpd",
        "uuid=3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b",
        "allow 1024-65535 10.0.0.0/8 1024-65535", "deny 0-65535 0.0.0.0/0 0-65535", "",
    ])  # fmt: skip


async def start_miniupnpd(router: Router, protocol: Protocol, tmp_path: Path) -> Path:
    await router.run(["nft", "-f", "-"], stdin=NFT.encode())
    conf = tmp_path / "miniupnpd.conf"
    conf.write_text(config(protocol))
    log = tmp_path / "miniupnpd.log"
    argv = ["miniupnpd", "-d", "-f", str(conf), "-P", str(tmp_path / "miniupnpd.pid")]
    with log.open("wb") as out:
        daemon = await router.start_process(argv, stdout=out.fileno(), stderr=subprocess.STDOUT)
    ready = "HTTP listening" if protocol is Protocol.UPNP else "Listening for NAT-PMP/PCP"
    await wait_for_log(daemon, log, ready, 10.0)
    return log


@pytest.mark.parametrize("protocol", [Protocol.UPNP, Protocol.NATPMP, Protocol.PCP])
async def test_miniupnpd_answers_and_its_refusal_is_handled(
    protocol: Protocol, tmp_path: Path
) -> None:
    if shutil.which("miniupnpd") is None:
        pytest.skip(
            "miniupnpd is not installed (Debian miniupnpd-nftables; `make lab-deps` installs "
            "it): the port-mapping lab test cannot run"
        )
    async with open_lab([NatPreset.SYMMETRIC]) as lab:
        site = lab.sites[0]
        router, host = site.router, site.host
        assert router is not None
        daemon_log = await start_miniupnpd(router, protocol, tmp_path)
        with trio.fail_after(30):
            done = await host.run_python(
                ["-m", "tests.lab.portmap_probe", protocol.value, "--seconds", "4"], check=False
            )
        log = done.stderr.decode(errors="replace")
        assert done.returncode == 0, log
        result = json.loads(done.stdout.decode().strip().splitlines()[-1])
        daemon = daemon_log.read_text(errors="replace")
        ours, theirs = EXPECTED[protocol]
        assert result["gateway"] == router.lan_ip  # found in the host's route table
        assert ours in log, log
        assert theirs in daemon, daemon
        assert "Port forwarding is impossible" in daemon  # the reason for the refusal
        stats = result["statistics"]
        assert result["held"] is None and stats["mapping"] is None
        assert stats["malformed"] == 0 and stats["granted"] == 0
        assert "Traceback" not in log
        rules = await router.run(["nft", "list", "table", "inet", TABLE])
        assert "dnat" not in rules.stdout.decode()  # nothing left on the router


# -- a symmetric pair through a real NAT's port forward ------------------------------------------

PMP_NFT = f"""table ip lab_pmp {{
  chain pre {{
    type nat hook prerouting priority dstnat - 1; policy accept;
  }}
}}
add rule inet lab_filter input iifname "{LAN_IF}" udp dport {{ 1900, 5351 }} accept
add rule inet lab_filter input iifname "{LAN_IF}" tcp dport {HTTP_PORT} accept
"""
EVENT_TIMEOUT_S = 45.0


def event(node: ChatNode, name: str, start: int = 0) -> dict[str, Any]:
    found = node.find(re.compile(r'^\{"event": "' + name + '"'), start)
    assert found is not None, node.describe()
    value: dict[str, Any] = json.loads(found[1].string)
    return value


async def wait_event(node: ChatNode, name: str) -> dict[str, Any]:
    await node.wait_for(r'^\{"event": "' + name + '"', EVENT_TIMEOUT_S)
    return event(node, name)


DAEMON_FLAGS = {
    Protocol.UPNP: ["--upnp", "--no-natpmp", "--no-pcp"],
    Protocol.NATPMP: ["--no-pcp"],
    Protocol.PCP: ["--no-natpmp"],
}


@pytest.mark.parametrize("protocol", [Protocol.UPNP, Protocol.NATPMP, Protocol.PCP])
async def test_symmetric_pair_connects_direct_through_a_mapped_port(
    protocol: Protocol, tmp_path: Path
) -> None:
    """Two symmetric NATs (``masquerade fully-random``): the listener's router runs a UPnP IGD,
    NAT-PMP or PCP daemon (``pmp_router``: each mapping an nftables DNAT rule, as miniupnpd
    makes them), the listener maps its port, the connector dials it and the connection is
    direct at once; when the listener stops, its mapping is deleted on the router."""
    async with (
        open_lab([NatPreset.SYMMETRIC, NatPreset.SYMMETRIC]) as lab,
        trio.open_nursery() as n,
    ):
        primary, alternate = lab.server.primary_ip, lab.server.alternate_ip
        await start_cli_gateway(lab.server, primary, alternate, tmp_path)
        mapped_site, other_site = lab.sites
        router = mapped_site.router
        assert router is not None
        await router.run(["nft", "-f", "-"], stdin=PMP_NFT.encode())
        daemon_log = tmp_path / "pmp_router.log"
        with daemon_log.open("wb") as err:
            process = await router.start_python(
                ["-m", "tests.lab.pmp_router", WAN_IF, router.wan_ip, router.lan_ip,
                 *DAEMON_FLAGS[protocol]],
                stdout=subprocess.PIPE, stderr=err.fileno(),
            )  # fmt: skip
        daemon = ChatNode("pmp_router", process, daemon_log)
        n.start_soon(daemon.read_output)
        await wait_event(daemon, "ready")
        node_args = [*gateway_arguments(primary)]
        listener = await _start_node(
            mapped_site.host, "listener", [*node_args, "--port-mapping", protocol.value],
            tmp_path, n,
        )  # fmt: skip
        ready = await wait_event(listener, "ready")
        assert ready["nat_type"] == "symmetric"
        mapped = (await wait_event(listener, "mapped"))["mapped"]
        assert mapped[0] == router.wan_ip
        assert (await wait_event(daemon, "mapped"))["external"] == mapped
        connector = await _start_node(
            other_site.host, "connector", [*node_args, "--connect", ready["node_id"]], tmp_path, n
        )
        assert (await wait_event(connector, "connected"))["method"] == "direct", (
            connector.describe() + listener.describe()
        )
        assert (await wait_event(connector, "message"))["text"] == "pong"
        assert (await wait_event(connector, "final"))["method"] == "direct"
        assert (await wait_event(listener, "connected"))["method"] == "direct"
        await listener.say("quit")
        stopped = await wait_event(listener, "stopped")
        assert stopped["statistics"]["deleted"] == 1, listener.describe()
        assert (await wait_event(daemon, "unmapped"))["external"] == mapped
        rules = await router.run(["nft", "list", "table", "ip", "lab_pmp"])
        assert "dnat" not in rules.stdout.decode()  # the mapping is gone after the node stops
        n.cancel_scope.cancel()


async def _start_node(
    host: Host, name: str, args: list[str], logs: Path, nursery: trio.Nursery
) -> ChatNode:
    log = logs / f"{name}.log"
    with log.open("wb") as err:
        process = await host.start_python(
            ["-m", "tests.lab.portmap_node", *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err.fileno(),
        )  # fmt: skip
    node = ChatNode(name, process, log)
    nursery.start_soon(node.read_output)
    return node
