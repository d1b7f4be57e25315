"""Port mapping against a real router daemon: Debian's ``miniupnpd`` (nftables build) in a
symmetric NAT router's namespace, UPnP IGD, NAT-PMP and PCP each in turn.

The node's PortMapper (``tests/lab/portmap_probe.py``, in the host's namespace) finds the
gateway from the host's route table and speaks each protocol to the daemon. miniupnpd 2.3.1
refuses to forward on a reserved WAN address ("Port forwarding is impossible"), and every
address the lab may use is reserved (203.0.113.0/24 documentation, 10/8, 100.64/10), so the
daemon answers every request and refuses every mapping: this test checks the protocols
interoperate and that the refusal is a clear line with no mapping, no crash and nothing left on
the router (the node then punches or relays as before). A mapping that succeeds, its renewal,
its deletion, a direct symmetric <-> symmetric connection through it, a router that forgets and
one that lies are tested on the simulated internet (``tests/portmap``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import trio

from macula_nat.portmap.client import Protocol
from tests.lab.gateway_support import wait_for_log
from tests.nat_lab import NatPreset, Router, open_lab
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
