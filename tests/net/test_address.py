"""Address normalisation: one spelling per address, ValueError for anything else."""

from __future__ import annotations

import socket

import pytest

from macula_nat.net.address import (
    address_family,
    any_address,
    destination_address,
    is_global_ipv6,
    is_unspecified,
    normalise_address,
    normalise_ip,
    source_prefix,
)


@pytest.mark.parametrize(
    ("given", "canonical"),
    [("127.0.0.1", "127.0.0.1"), ("::0001", "::1"), ("2001:DB8:0::1", "2001:db8::1")],
)
def test_ips_are_made_canonical(given: str, canonical: str) -> None:
    assert normalise_ip(given) == canonical
    assert normalise_address((given, 80)) == (canonical, 80)


@pytest.mark.parametrize(
    "address",
    [
        ("localhost", 80),
        ("1.2.3", 80),
        (b"127.0.0.1", 80),
        ("127.0.0.1", -1),
        ("127.0.0.1", 65536),
        ("127.0.0.1", True),
        ("127.0.0.1", "80"),
        ("127.0.0.1",),
        ("127.0.0.1", 80, 0),
    ],
)
def test_malformed_addresses_raise_value_error(address: object) -> None:
    with pytest.raises(ValueError):
        normalise_address(address)  # type: ignore[arg-type]


def test_a_json_pair_becomes_an_address() -> None:
    assert normalise_address(["::0001", 80]) == ("::1", 80)


@pytest.mark.parametrize("address", [("127.0.0.1", 0), ("0.0.0.0", 53), ("::", 53)])
def test_destinations_need_a_concrete_ip_and_port(address: tuple[str, int]) -> None:
    assert normalise_address(address) == address
    with pytest.raises(ValueError):
        destination_address(address)


def test_families_and_wildcards() -> None:
    assert address_family("10.0.0.1") == socket.AF_INET
    assert address_family("fd00::1") == socket.AF_INET6
    assert is_unspecified(any_address(4)) and is_unspecified(any_address(6))
    assert not is_unspecified("10.0.0.1")
    with pytest.raises(ValueError):
        any_address(5)


@pytest.mark.parametrize(
    ("host", "prefix"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("2001:0db8:0001:0002:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("::1", "::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),  # a dual-stack socket's IPv4 peer is that IPv4 host
        ("fe80::1%eth0", "fe80::/64"),
    ],
)
def test_a_source_is_an_ipv4_address_or_an_ipv6_64(host: str, prefix: str) -> None:
    assert source_prefix(host) == prefix


@pytest.mark.parametrize(
    ("ip", "is_global"),
    [
        ("2001:db8:a::10", True),  # documentation prefix: global by scope (the sim, the lab)
        ("2a00:1450:4001::1", True),
        ("fe80::1", False),
        ("fd00::1", False),
        ("::1", False),
        ("::", False),
        ("ff02::1", False),
        ("::ffff:192.0.2.7", False),
        ("203.0.113.7", False),  # IPv4: a public IPv4 host is published as observed anyway
    ],
)
def test_global_ipv6_is_by_scope(ip: str, is_global: bool) -> None:
    assert is_global_ipv6(ip) is is_global
