"""Each verb's arguments: one ``add_*_parser`` per verb module of :mod:`macula_nat.cli`.

The parsers live here, apart from the verbs' code, so that ``--help`` and argument errors cost
no more than :mod:`argparse`: each parser's ``handler`` default imports its verb's module (and
with it Trio, the QUIC stack, ...) only when the verb runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TypeAlias

from macula_nat.cli.arguments import (
    address_argument,
    bootstrap_argument,
    handler,
    node_id_argument,
    port_argument,
)
from macula_nat.nat.rate_limit import DEFAULT_BURST, DEFAULT_RATE

__all__ = [
    "add_connect_parsers",
    "add_demo_parser",
    "add_detect_parser",
    "add_gateway_parser",
    "add_observe_parser",
    "add_status_parser",
]

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def add_demo_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    """Add ``demo`` (:mod:`macula_nat.cli.demo`)."""
    demo = subparsers.add_parser(
        "demo", help="run the NAT demonstration on a simulated internet (what `make run` runs)"
    )
    demo.add_argument(
        "--runtime",
        action="store_true",
        help="run the supervision-tree demonstration instead",
    )
    demo.add_argument(
        "--seconds", type=float, default=3.0, help="how long the --runtime demonstration runs"
    )
    demo.add_argument(
        "--web",
        type=address_argument,
        metavar="IP:PORT",
        help="show the pair matrix filling in on a live page there (runs on the real clock)",
    )
    demo.set_defaults(handler=handler("macula_nat.cli.demo", "run_demo"))
    return demo


_DETECT = """\
Classify the NAT in front of this host (RFC 4787 mapping, filtering and port allocation) by
probing STUN observers: an RFC 5780 observer (one run with --alt, e.g. `macula-nat observe`, or
coturn's turnserver with two addresses) gives the full picture; several single-address observers
give the mapping. Prints the profile for a person, or as JSON with --json."""


def add_detect_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    """Add ``detect`` (:mod:`macula_nat.cli.detect`)."""
    parser = subparsers.add_parser("detect", help="classify this host's NAT", description=_DETECT)
    parser.add_argument(
        "--observer",
        dest="observers",
        action="append",
        default=[],
        type=address_argument,
        metavar="IP:PORT",
        help="a STUN observer to probe (repeat for several)",
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per probe (5)")
    parser.add_argument("--json", action="store_true", help="print the profile as JSON")
    parser.set_defaults(handler=handler("macula_nat.cli.detect", "run_detect"))
    return parser


_OBSERVE = """\
Run a STUN observer: the server public nodes run so that others can learn their reflexive
address. With --alt (a second IP and a second port) it binds all four IP/port combinations and
is a full RFC 5780 server: clients can then classify their NAT's mapping and filtering, e.g. with
coturn's `turnutils_natdiscovery -m -f`. Runs until Ctrl-C."""


def add_observe_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    """Add ``observe`` (:mod:`macula_nat.cli.observe`)."""
    parser = subparsers.add_parser(
        "observe",
        help="run a STUN observer (a full RFC 5780 server with --alt)",
        description=_OBSERVE,
    )
    parser.add_argument(
        "--listen",
        required=True,
        type=address_argument,
        metavar="IP:PORT",
        help="primary address, e.g. 203.0.113.10:3478 ([IP]:PORT for IPv6; port 0: any)",
    )
    parser.add_argument(
        "--alt",
        dest="alternate",
        type=address_argument,
        metavar="IP:PORT",
        help="alternate address: another IP and another port, e.g. 203.0.113.11:3479",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=DEFAULT_RATE,
        help=f"requests a second answered per source IP (default {DEFAULT_RATE:g})",
    )
    parser.add_argument(
        "--burst",
        type=float,
        default=DEFAULT_BURST,
        help=f"requests a source may send at once (default {DEFAULT_BURST:g})",
    )
    parser.set_defaults(handler=handler("macula_nat.cli.observe", "run_observe"))
    return parser


_GATEWAY = """\
Run what a public node runs, in one supervision tree: a STUN observer on --listen (a full
RFC 5780 server with --alt), a relay on the relay port, a Mainline DHT node on the DHT port
(bootstrapped from --bootstrap), and the relay registry announcing the relay through the DHT.
With --listen6 (and --alt6) beside an IPv4 --listen it is dual-stack: a second observer there,
the relay and the DHT node (BEP 32: both swarms, one storage) on both IPs. Runs until Ctrl-C."""


def add_gateway_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    """Add ``gateway`` (:mod:`macula_nat.cli.gateway`)."""
    parser = subparsers.add_parser(
        "gateway",
        help="run a public node: observer, relay and DHT node",
        description=_GATEWAY,
    )
    parser.add_argument(
        "--listen",
        required=True,
        type=address_argument,
        metavar="IP:PORT",
        help="the observer's address, e.g. 203.0.113.10:3478; relay and DHT on the same IP",
    )
    parser.add_argument(
        "--alt",
        dest="alternate",
        type=address_argument,
        metavar="IP:PORT",
        help="the observer's alternate address (another IP and port): RFC 5780",
    )
    parser.add_argument(
        "--listen6",
        type=address_argument,
        metavar="[IP]:PORT",
        help="dual stack (--listen then IPv4): the observer's IPv6 address, e.g. "
        "[2001:db8::10]:3478; relay and DHT also on this IP, at the same ports",
    )
    parser.add_argument(
        "--alt6",
        dest="alternate6",
        type=address_argument,
        metavar="[IP]:PORT",
        help="the IPv6 observer's alternate address (RFC 5780 over IPv6)",
    )
    parser.add_argument(
        "--relay-port",
        type=port_argument,
        metavar="N",
        help="the relay's port (default: the port after the observer's highest)",
    )
    parser.add_argument(
        "--dht-port",
        type=port_argument,
        metavar="N",
        help="the DHT node's port (default: the one after the relay's)",
    )
    parser.add_argument(
        "--relay-tcp",
        action="store_true",
        help="the relay also serves nodes over TCP/TLS and WebSocket (/macula-relay), for "
        "networks that block UDP",
    )
    parser.add_argument(
        "--relay-tcp-port",
        type=port_argument,
        metavar="N",
        help="the relay's TCP port with --relay-tcp (default: its UDP port number)",
    )
    parser.add_argument(
        "--bootstrap",
        type=bootstrap_argument,
        nargs="+",
        default=[],
        metavar="HOST:PORT",
        help="DHT nodes to join through (other gateways' DHT ports; 'public': the public "
        "Mainline DHT's routers)",
    )
    _landmarks_option(parser)
    _key_option(parser)
    parser.add_argument(
        "--web",
        type=address_argument,
        metavar="IP:PORT",
        help="serve the gateway's live status page there (e.g. 127.0.0.1:8080)",
    )
    parser.set_defaults(handler=handler("macula_nat.cli.gateway", "run_gateway"))
    return parser


_CONNECT = """\
A node on a real network. Both `listen` and `connect` join through gateways: --observer (their
STUN observers, for NAT detection) and --bootstrap (their DHT ports: the directory where records
and relays are found). `listen` prints the node id and accepts connections, from any number of
peers at once; `connect` reaches a node by id. Either way, each line read from standard input is
sent as a message (by `listen`, to every connected peer), each message received is printed under
its sender's name, and so is every change of a connection's method (relayed -> punched ...).
`connect` ends at end of input, either at Ctrl-C."""


def add_connect_parsers(subparsers: Subparsers) -> None:
    """Add ``listen`` and ``connect`` (:mod:`macula_nat.cli.connect`)."""
    listen = subparsers.add_parser(
        "listen", help="accept connections from other nodes and chat", description=_CONNECT
    )
    _node_options(listen, listen_option="--listen")
    listen.set_defaults(handler=handler("macula_nat.cli.connect", "run_listen"))
    connect = subparsers.add_parser(
        "connect", help="connect to a node by id and chat", description=_CONNECT
    )
    connect.add_argument(
        "target", type=node_id_argument, metavar="NODE_ID", help="the node to reach"
    )
    connect.add_argument(
        "--timeout", type=float, default=15.0, help="seconds to connect within (default 15)"
    )
    _node_options(connect, listen_option="--listen")
    connect.set_defaults(handler=handler("macula_nat.cli.connect", "run_connect"))


_STATUS = """\
Run a node with its live status page (NAT profile, connections, punches, cache, components, a
connect form) until Ctrl-C. The node joins through gateways as `listen` does; --node is its own
socket, --listen the page's address."""


def add_status_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    """Add ``status`` (:mod:`macula_nat.cli.status`)."""
    parser = subparsers.add_parser(
        "status", help="run a node with its live status page", description=_STATUS
    )
    parser.add_argument(
        "--listen",
        type=address_argument,
        default=("127.0.0.1", 8080),
        metavar="IP:PORT",
        help="where the page is served (default 127.0.0.1:8080)",
    )
    _node_options(parser, listen_option="--node", observer_aliases=("--gateway",))
    parser.set_defaults(handler=handler("macula_nat.cli.status", "run_status"))
    return parser


def _node_options(
    parser: argparse.ArgumentParser,
    *,
    listen_option: str,
    observer_aliases: tuple[str, ...] = (),
) -> None:
    """The options of a node that joins through gateways; ``listen_option`` names its socket."""
    parser.add_argument(
        "--observer",
        *observer_aliases,
        dest="observers",
        type=address_argument,
        nargs="+",
        required=True,
        metavar="IP:PORT",
        help="gateways' STUN observers (their --listen address; with --dual-stack, give one "
        "of each IP version to classify the IPv6 side too)",
    )
    parser.add_argument(
        "--bootstrap",
        type=bootstrap_argument,
        nargs="+",
        required=True,
        metavar="HOST:PORT",
        help="gateways' DHT ports: the directory of records and relays ('public': the public "
        "Mainline DHT's routers)",
    )
    _landmarks_option(parser)
    parser.add_argument(
        listen_option,
        type=address_argument,
        default=("0.0.0.0", 0),
        metavar="IP:PORT",
        help="this node's socket (default: any address, a free port)",
    )
    parser.add_argument(
        "--dual-stack",
        action="store_true",
        help="one socket for IPv4 and IPv6 (on [::], --listen's port): IPv6 tried first",
    )
    parser.add_argument(
        "--tcp-fallback",
        type=address_argument,
        nargs="*",
        metavar="RELAY",
        help="when no relay answers over UDP, reach one over TCP/TLS (the relay needs "
        "--relay-tcp), and the directory through it; the relays named (IP:PORT, a gateway's "
        "relay) are tried when the directory, with UDP blocked, lists none",
    )
    parser.add_argument(
        "--port-mapping",
        nargs="*",
        choices=("pcp", "natpmp", "upnp"),
        metavar="PROTOCOL",
        help="ask the router to map this node's port (pcp, natpmp, upnp; none named: all three,"
        " the first that answers); the mapped port is published and dialled",
    )
    _key_option(parser)


def _landmarks_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--landmarks",
        type=address_argument,
        nargs="+",
        default=[],
        metavar="IP:PORT",
        help="the deployment's region landmarks (DHT ports, the same list everywhere): "
        "relays near this node are found first",
    )


def _key_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--key",
        type=Path,
        metavar="FILE",
        help="the node key file, created if missing (default: a new key for this run)",
    )
