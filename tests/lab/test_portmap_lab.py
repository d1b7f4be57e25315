"""Port mapping on real NATs (Linux network namespaces, nftables), through Debian's ``miniupnpd``
(2.3.1, nftables build) in a symmetric NAT router's namespace, UPnP IGD, NAT-PMP and PCP each in
turn; the node's PortMapper finds the gateway from the host's route table.

miniupnpd forwards ports on a reserved WAN address (every address the lab may use is reserved)
only when its own STUN check (``ext_perform_stun``) finds no NAT and no filtering in front of the
router. Without that check it answers every request and refuses every mapping: the first tests
show the protocols interoperate and that the refusal is a clear line with no mapping, no crash
and nothing left on the router (the node then punches or relays as before). With the check,
against the lab gateway's observer, it maps: a symmetric <-> symmetric pair with mapping on one
side connects direct, and the forward is gone from the router after the node stops.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import trio

from macula_nat.portmap.client import Protocol
from tests.lab.connect_support import ChatNode, gateway_arguments
from tests.lab.gateway_support import SERVER_PORTS, start_cli_gateway, wait_for_log
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


async def start_miniupnpd(
    router: Router, protocol: Protocol, tmp_path: Path, extra: Sequence[str] = ()
) -> Path:
    """miniupnpd in ``router``'s namespace serving ``protocol``; ``extra``: more config lines."""
    await router.run(["nft", "-f", "-"], stdin=NFT.encode())
    conf = tmp_path / "miniupnpd.conf"
    conf.write_text(config(protocol) + "\n".join(extra) + "\n")
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


# -- a symmetric pair through miniupnpd's port forward ------------------------------------------

STUN_NFT = """table ip lab_upnp_self {{
  chain post {{
    type nat hook postrouting priority srcnat - 2; policy accept;
    oifname "{wan}" ip saddr {wan_ip} meta l4proto udp snat ip to {wan_ip}
  }}
}}
add rule inet lab_filter input iifname "{wan}" ip saddr {{ {primary}, {alternate} }} \\
  udp sport {{ {ports} }} accept
"""
"""What lets miniupnpd's own STUN check (``ext_perform_stun``) see a public address: the
router's own datagrams keep their port (the preset's ``masquerade fully-random`` is for the LAN),
and the observer's answers from its other IP and port reach the router's sockets. miniupnpd
2.3.1 forwards ports on a reserved WAN address only when STUN finds no NAT and no filtering in
front of it, as here: the lab's WAN is the simulated Internet itself."""
EVENT_TIMEOUT_S = 45.0


def event(node: ChatNode, name: str, start: int = 0) -> dict[str, Any]:
    found = node.find(re.compile(r'^\{"event": "' + name + '"'), start)
    assert found is not None, node.describe()
    value: dict[str, Any] = json.loads(found[1].string)
    return value


async def wait_event(node: ChatNode, name: str) -> dict[str, Any]:
    await node.wait_for(r'^\{"event": "' + name + '"', EVENT_TIMEOUT_S)
    return event(node, name)


async def forwarded_ports(router: Router) -> set[int]:
    """The ports miniupnpd forwards on the router now (its DNAT rules)."""
    rules = await router.run(["nft", "list", "chain", "inet", TABLE, "prerouting_miniupnpd"])
    return {int(port) for port in re.findall(rb"dport (\d+) .*dnat", rules.stdout)}


@pytest.mark.parametrize("protocol", [Protocol.UPNP, Protocol.NATPMP, Protocol.PCP])
async def test_symmetric_pair_connects_direct_through_miniupnpd(
    protocol: Protocol, tmp_path: Path
) -> None:
    """Two symmetric NATs (``masquerade fully-random``): the listener's router runs Debian's
    miniupnpd with UPnP IGD, NAT-PMP or PCP, the listener maps its port, the connector dials it
    and the connection is direct at once; when the listener stops, miniupnpd's forward of the
    port is gone from the router."""
    if shutil.which("miniupnpd") is None:
        pytest.skip(
            "miniupnpd is not installed (Debian miniupnpd-nftables; `make lab-deps` installs "
            "it): the port-mapping lab test cannot run"
        )
    async with (
        open_lab([NatPreset.SYMMETRIC, NatPreset.SYMMETRIC]) as lab,
        trio.open_nursery() as n,
    ):
        primary, alternate = lab.server.primary_ip, lab.server.alternate_ip
        await start_cli_gateway(lab.server, primary, alternate, tmp_path)
        mapped_site, other_site = lab.sites
        router = mapped_site.router
        assert router is not None
        ports = ", ".join(str(port) for port in SERVER_PORTS)
        rules = STUN_NFT.format(
            wan=WAN_IF, wan_ip=router.wan_ip, primary=primary, alternate=alternate, ports=ports
        )
        await router.run(["nft", "-f", "-"], stdin=rules.encode())
        stun = [
            "ext_perform_stun=yes",
            f"ext_stun_host={primary}",
            f"ext_stun_port={SERVER_PORTS[0]}",
        ]
        daemon_log = await start_miniupnpd(router, protocol, tmp_path, stun)
        assert "Port forwarding is now enabled" in daemon_log.read_text(errors="replace")
        node_args = [*gateway_arguments(primary)]
        listener = await _start_node(
            mapped_site.host, "listener", [*node_args, "--port-mapping", protocol.value],
            tmp_path, n,
        )  # fmt: skip
        ready = await wait_event(listener, "ready")
        assert ready["nat_type"] == "symmetric"
        mapped = (await wait_event(listener, "mapped"))["mapped"]
        assert mapped[0] == router.wan_ip
        assert await forwarded_ports(router) == {mapped[1]}
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
        assert await forwarded_ports(router) == set()  # the mapping is gone after the node stops
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
