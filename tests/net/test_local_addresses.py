"""Discovery of the machine's own addresses from kernel tables."""

from __future__ import annotations

import ipaddress
import sys

import pytest

from macula_nat.net import RealUdpStack
from macula_nat.net.local_addresses import (
    discover_local_addresses,
    parse_fib_trie,
    parse_if_inet6,
)

FIB_TRIE = """\
Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 192.0.2.0/24 2 0 2
           |-- 192.0.2.0
              /24 link UNICAST
           |-- 192.0.2.2
              /32 host LOCAL
Local:
  +-- 0.0.0.0/0 3 0 5
           |-- 127.0.0.1
              /32 host LOCAL
"""

IF_INET6 = """\
00000000000000000000000000000001 01 80 10 80       lo
fd000000000000000000000000000002 04 40 00 82     eth0
fe8000000000000000fc00fffe000001 04 40 20 80     eth0
garbage
"""


def test_fib_trie_yields_local_host_addresses_once() -> None:
    assert parse_fib_trie(FIB_TRIE) == ["127.0.0.1", "192.0.2.2"]


def test_if_inet6_skips_link_local() -> None:
    assert parse_if_inet6(IF_INET6) == ["::1", "fd00::2"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/net")
def test_discovery_finds_loopback_last() -> None:
    found = discover_local_addresses()

    assert "127.0.0.1" in found
    loopback = [ipaddress.ip_address(ip).is_loopback for ip in found]
    assert loopback == sorted(loopback)
    assert RealUdpStack().addresses == found
