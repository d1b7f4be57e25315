"""Write tokens: bound to IP and target, valid for the current and the previous period."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from macula_nat.dht.node_id import NodeId
from macula_nat.dht.tokens import TOKEN_ROTATION, WriteTokens

from .strategies import ipv4, ipv6, node_ids

TOKENS = WriteTokens(secret=bytes(range(32)))
TARGET = NodeId(12345)
times = st.floats(-1e9, 1e9, allow_nan=False)


def test_token_valid_for_five_to_ten_minutes() -> None:
    token = TOKENS.issue("192.0.2.1", TARGET, 1.0)
    assert len(token) == 8
    assert TOKENS.verify(token, "192.0.2.1", TARGET, 1.0)
    assert TOKENS.verify(token, "192.0.2.1", TARGET, 599.9)
    assert not TOKENS.verify(token, "192.0.2.1", TARGET, 600.0)
    late = TOKENS.issue("192.0.2.1", TARGET, 299.9)
    assert TOKENS.verify(late, "192.0.2.1", TARGET, 599.9)
    assert TOKENS.issue("192.0.2.1", TARGET, 300.0) != late


def test_token_is_bound_to_ip_target_and_secret() -> None:
    token = TOKENS.issue("2001:db8::1", TARGET, 0.0)
    assert TOKENS.verify(token, "2001:db8:0::1", TARGET, 0.0)  # same address, other spelling
    assert not TOKENS.verify(token, "2001:db8::2", TARGET, 0.0)
    assert not TOKENS.verify(token, "2001:db8::1", NodeId(12346), 0.0)
    assert not WriteTokens(secret=bytes(32)).verify(token, "2001:db8::1", TARGET, 0.0)
    assert not TOKENS.verify(token[:-1], "2001:db8::1", TARGET, 0.0)
    assert not TOKENS.verify(b"", "2001:db8::1", TARGET, 0.0)


@given(ipv4 | ipv6, node_ids, times, st.floats(0, 1e4))
def test_validity_follows_the_period(ip: str, target: NodeId, issued: float, age: float) -> None:
    token = TOKENS.issue(ip, target, issued)
    elapsed = math.floor((issued + age) / TOKEN_ROTATION) - math.floor(issued / TOKEN_ROTATION)
    assert TOKENS.verify(token, ip, target, issued + age) == (elapsed <= 1)
    if age < TOKEN_ROTATION:
        assert TOKENS.verify(token, ip, target, issued + age)
    if age >= 2 * TOKEN_ROTATION:
        assert not TOKENS.verify(token, ip, target, issued + age)


def test_default_secrets_differ_and_configuration_is_checked() -> None:
    assert WriteTokens().issue("192.0.2.1", TARGET, 0.0) != WriteTokens().issue(
        "192.0.2.1", TARGET, 0.0
    )
    assert len(WriteTokens(size=4).issue("192.0.2.1", TARGET, 0.0)) == 4
    for bad in ({"secret": bytes(8)}, {"rotation": 0.0}, {"size": 21}, {"size": 3}):
        with pytest.raises(ValueError):
            WriteTokens(**bad)  # type: ignore[arg-type]
