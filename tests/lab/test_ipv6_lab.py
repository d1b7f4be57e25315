"""IPv6 in the lab (issue 13): namespaces with 2001:db8::/32 addresses, routers whose ``inet``
firewall is a stateful IPv6 firewall (``ct state established,related accept``, new inbound
dropped, no NAT), and real nodes across it.

- the firewall drops unsolicited datagrams and passes the answers to a host's own;
- ``macula-nat detect`` classifies a firewalled IPv6 host "firewalled, no NAT" (pd filtering);
- two firewalled IPv6-only hosts connect and punch directly, through an IPv6-only gateway;
- dual-stack hosts (IPv4 NAT and IPv6 firewall) behind an IPv4 gateway punch over IPv6 (tried
  first), and an IPv4-only host and a dual-stack one punch over IPv4.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import trio

from tests.lab.connect_support import NODE_LINE, ChatNode, start_chat_node
from tests.lab.gateway_support import SERVER_PORTS, start_cli_gateway
from tests.nat_lab import Host, Lab, NatPreset, SiteConfig, open_lab

pytestmark = pytest.mark.lab

READY_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 20.0
PUNCH_TIMEOUT_S = 15.0
MESSAGE_TIMEOUT_S = 5.0
PROBE_TIMEOUT_S = 20.0
FIREWALLED = NatPreset.PORT_RESTRICTED_CONE
"""The router in front of every IPv6 site: its IPv4 NAT for dual-stack hosts, and in any case
the stateful IPv6 firewall all lab routers run."""

_ECHO = """\
import socket, sys
sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
sock.bind((sys.argv[1], int(sys.argv[2])))
sock.settimeout(float(sys.argv[3]))
if len(sys.argv) > 4:  # open a flow to (argv[4], argv[5]) first
    sock.sendto(b"hello", (sys.argv[4], int(sys.argv[5])))
while True:
    try:
        data, source = sock.recvfrom(100)
    except TimeoutError:
        break
    sock.sendto(b"echo:" + data, source)
"""

_ASK = """\
import socket, sys, time
sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
sock.bind((sys.argv[5], int(sys.argv[4])))  # a chosen source: the kernel's may be another
sock.settimeout(0.2)
target = (sys.argv[1], int(sys.argv[2]))
for _ in range(int(sys.argv[3])):  # the first datagram may wait for neighbour discovery
    sock.sendto(b"hi", target)
    try:
        data, source = sock.recvfrom(100)
    except TimeoutError:
        continue
    if data == b"hello":  # the far echo opening its flow to us: not an answer
        continue
    print(data.decode(), source[0])
    break
else:
    print("no answer")
"""


async def ask(node: Host | Lab, ip: str, port: int, tries: int = 50, source_port: int = 0) -> str:
    """The first answer (``echo:hi`` and the IP it came from) to ``hi`` sent to ``ip``:``port``
    from ``node`` (a host, or the lab's server), from ``source_port``; "no answer" after
    ``tries`` sends 0.2 s apart."""
    runner, source = (
        (node.server, node.server.ips6[0]) if isinstance(node, Lab) else (node, node.ip6)
    )
    assert source is not None
    args = [ip, str(port), str(tries), str(source_port), source]
    with trio.fail_after(PROBE_TIMEOUT_S):
        done = await runner.run_python(["-c", _ASK, *args])
    return done.stdout.decode().strip()


async def test_the_ipv6_firewall_drops_the_unsolicited_and_passes_answers() -> None:
    sites = [SiteConfig(FIREWALLED, family="ipv6"), SiteConfig(NatPreset.NONE, family="ipv6")]
    async with open_lab(sites) as lab:
        walled, open_host = lab.sites[0].host, lab.sites[1].host
        assert walled.ip6 == "2001:db8:1::2" and open_host.ip6 == "2001:db8::200"
        server_ip = lab.server.ips6[0]
        await lab.server.start_python(["-c", _ECHO, server_ip, "9000", "30"])
        await open_host.start_python(["-c", _ECHO, open_host.ip6, "9000", "30"])
        # outbound from behind the firewall: the answer passes, from the address asked
        assert await ask(walled, server_ip, 9000) == f"echo:hi {server_ip}"
        # the open host answers anyone
        assert await ask(lab, open_host.ip6, 9000) == f"echo:hi {open_host.ip6}"
        # the firewalled one, having sent from :9000 to the server's :9001, hears the server's
        # :9001 and nothing else of it (address- and port-dependent filtering)
        await walled.start_python(["-c", _ECHO, walled.ip6, "9000", "30", server_ip, "9001"])
        assert await ask(lab, walled.ip6, 9000, source_port=9001) == f"echo:hi {walled.ip6}"
        assert await ask(lab, walled.ip6, 9000, tries=10, source_port=9002) == "no answer"


async def test_a_firewalled_ipv6_host_is_detected_no_nat_and_filtered() -> None:
    async with open_lab([SiteConfig(FIREWALLED, family="ipv6")]) as lab:
        primary, alternate = lab.server.ips6
        await lab.server.start_python(
            ["-m", "macula_nat", "observe", "--listen", f"[{primary}]:{SERVER_PORTS[0]}",
             "--alt", f"[{alternate}]:{SERVER_PORTS[1]}"]
        )  # fmt: skip
        host = lab.sites[0].host
        observer = f"[{primary}]:{SERVER_PORTS[0]}"
        profile: object = None
        with trio.fail_after(READY_TIMEOUT_S):
            while not isinstance(profile, dict):  # until the observer is up
                done = await host.run_python(
                    ["-m", "macula_nat", "detect", "--observer", observer, "--timeout", "2",
                     "--json"], check=False,
                )  # fmt: skip
                profile = json.loads(done.stdout) if done.returncode == 0 else None
    assert isinstance(profile, dict)
    assert (profile["nat_present"], profile["mapping"], profile["filtering"]) == (False, "ei", "pd")
    assert profile["public_ip"] == host.ip6 and profile["nat_type"] == "firewalled, no NAT"


def _gateway(primary: str) -> list[str]:
    observer = f"[{primary}]" if ":" in primary else primary
    return ["--observer", f"{observer}:{SERVER_PORTS[0]}",
            "--bootstrap", f"{observer}:{SERVER_PORTS[1] + 2}"]  # fmt: skip


async def _chat_pair(
    lab: Lab, listener_host: Host, connector_host: Host, gateway: list[str], logs: Path,
    options: tuple[list[str], list[str]], connector_gateway: list[str] | None = None,
) -> tuple[ChatNode, ChatNode]:  # fmt: skip
    """Run ``listen`` and ``connect`` until the connection is punched and carries a message
    both ways; return both nodes (still running: the lab stops them). The connector joins
    through ``connector_gateway`` when given (another IP version of the gateway)."""
    async with trio.open_nursery() as nursery:
        listener = await start_chat_node(
            listener_host, "listener", ["listen", *gateway, *options[0]], logs, nursery
        )
        await listener.wait_for("waiting for connections$", READY_TIMEOUT_S)
        found = listener.find(NODE_LINE)
        assert found is not None, listener.describe()
        listener_id = found[1].group(1)
        connector = await start_chat_node(
            connector_host, "connector",
            ["connect", listener_id, *(connector_gateway or gateway), *options[1]], logs, nursery,
        )  # fmt: skip
        await connector.say("ping")
        await listener.wait_for(r"\S+> ping$", READY_TIMEOUT_S + CONNECT_TIMEOUT_S)
        await connector.wait_for(r"(?:connected to \S+ \(punched\)|\[\S+: now punched\])$",
                                 PUNCH_TIMEOUT_S)  # fmt: skip
        await listener.say("pong")
        await connector.wait_for(rf"{listener_id[:16]}> pong$", MESSAGE_TIMEOUT_S)
        nursery.cancel_scope.cancel()
    return listener, connector


def _direct_paths(node: ChatNode) -> list[str]:
    """The addresses its connection's direct path took (the link logs each, ``-v``)."""
    text = node.log.read_text(errors="replace")
    return [line.split("direct path to ", 1)[1] for line in text.splitlines()
            if "direct path to " in line]  # fmt: skip


async def test_two_firewalled_ipv6_only_hosts_punch_through_an_ipv6_gateway(
    tmp_path: Path,
) -> None:
    sites = [SiteConfig(FIREWALLED, family="ipv6"), SiteConfig(FIREWALLED, family="ipv6")]
    async with open_lab(sites, delay_ms=5) as lab:
        primary, alternate = lab.server.ips6
        await start_cli_gateway(lab.server, f"[{primary}]", f"[{alternate}]", tmp_path)
        listen = ["--listen", "[::]:0"]
        _, connector = await _chat_pair(
            lab, lab.sites[0].host, lab.sites[1].host, _gateway(primary), tmp_path,
            (listen, listen),
        )  # fmt: skip
        assert any("2001:db8:1::2" in path for path in _direct_paths(connector))


@pytest.mark.parametrize(
    ("listener_family", "connector_family", "version"),
    [("dual", "dual", 6), ("ipv4", "dual", 4), ("dual", "ipv4", 4)],
)
async def test_dual_stack_pairs_punch_over_the_version_they_share(
    listener_family: str, connector_family: str, version: int, tmp_path: Path
) -> None:
    sites = [SiteConfig(FIREWALLED, family=listener_family),  # type: ignore[arg-type]
             SiteConfig(FIREWALLED, family=connector_family)]  # type: ignore[arg-type]  # fmt: skip
    async with open_lab(sites, delay_ms=5) as lab:
        primary, alternate = lab.server.ips
        await start_cli_gateway(lab.server, primary, alternate, tmp_path)
        options = tuple(["--dual-stack"] if f == "dual" else [] for f in
                        (listener_family, connector_family))  # fmt: skip
        listener_host, connector_host = lab.sites[0].host, lab.sites[1].host
        _, connector = await _chat_pair(
            lab, listener_host, connector_host, _gateway(primary), tmp_path,
            (options[0], options[1]),
        )  # fmt: skip
        paths = _direct_paths(connector)
        wanted = listener_host.ip6 if version == 6 else listener_host.public_ip
        assert wanted is not None and any(f"'{wanted}'" in path for path in paths), paths


@pytest.mark.parametrize("six_listens", [True, False], ids=["ipv6-listens", "dual-listens"])
async def test_an_ipv6_only_and_a_dual_stack_host_punch_through_a_dual_stack_gateway(
    six_listens: bool, tmp_path: Path
) -> None:
    """The gateway serves both versions (``--listen6``): the IPv6-only host joins its IPv6
    DHT swarm, the dual-stack one its IPv4 swarm, and each finds the other's record there; the
    dual-stack host's record names the relay's IPv6 address too, so they punch over IPv6."""
    families = ["ipv6", "dual"] if six_listens else ["dual", "ipv6"]
    sites = [SiteConfig(FIREWALLED, family=f) for f in families]  # type: ignore[arg-type]
    async with open_lab(sites, delay_ms=5) as lab:
        primary, alternate = lab.server.ips
        primary6, alternate6 = lab.server.ips6
        dual_stack = ["--listen6", f"[{primary6}]:{SERVER_PORTS[0]}",
                      "--alt6", f"[{alternate6}]:{SERVER_PORTS[1]}"]  # fmt: skip
        await start_cli_gateway(lab.server, primary, alternate, tmp_path, dual_stack)
        gateways = [_gateway(primary6) if f == "ipv6" else _gateway(primary) for f in families]
        options = [["--listen", "[::]:0"] if f == "ipv6" else ["--dual-stack"] for f in families]
        listener_host, connector_host = lab.sites[0].host, lab.sites[1].host
        _, connector = await _chat_pair(
            lab, listener_host, connector_host, gateways[0], tmp_path,
            (options[0], options[1]), gateways[1],
        )  # fmt: skip
        paths = _direct_paths(connector)
        assert listener_host.ip6 is not None
        assert any(f"'{listener_host.ip6}'" in path for path in paths), paths


async def test_dual_stack_hosts_behind_symmetric_nats_classify_ipv6_and_punch_over_it(
    tmp_path: Path,
) -> None:
    """Symmetric IPv4 NATs on both sides: relay only, by the IPv4 profiles. Given an observer
    of each version, each node classifies its IPv6 side too (the stateful firewall: no NAT),
    publishes it, and the pair punches over IPv6."""
    sites = [SiteConfig(NatPreset.SYMMETRIC, family="dual")] * 2
    async with open_lab(sites, delay_ms=5) as lab:
        primary, alternate = lab.server.ips
        primary6, alternate6 = lab.server.ips6
        dual_stack = ["--listen6", f"[{primary6}]:{SERVER_PORTS[0]}",
                      "--alt6", f"[{alternate6}]:{SERVER_PORTS[1]}"]  # fmt: skip
        await start_cli_gateway(lab.server, primary, alternate, tmp_path, dual_stack)
        both = ["--observer", f"{primary}:{SERVER_PORTS[0]}", f"[{primary6}]:{SERVER_PORTS[0]}",
                "--bootstrap", f"{primary}:{SERVER_PORTS[1] + 2}", "--dual-stack"]  # fmt: skip
        listener_host, connector_host = lab.sites[0].host, lab.sites[1].host
        listener, connector = await _chat_pair(
            lab, listener_host, connector_host, both, tmp_path, ([], [])
        )
        for node, host in ((listener, listener_host), (connector, connector_host)):
            assert host.ip6 is not None
            six = rf"IPv6: firewalled, no NAT, public address \[{re.escape(host.ip6)}\]:\d+$"
            assert node.find(re.compile(six)) is not None, node.describe()
            assert node.find(re.compile("NAT: symmetric,")) is not None, node.describe()
        paths = _direct_paths(connector)
        assert listener_host.ip6 is not None
        assert any(f"'{listener_host.ip6}'" in path for path in paths), paths
