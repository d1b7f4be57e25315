"""Hypothesis strategies for relay frames, and small helpers the relay tests share."""

from __future__ import annotations

import ipaddress

from hypothesis import strategies as st

from macula_nat.identity import NodeId
from macula_nat.net.address import Address
from macula_nat.relay import frames

node_ids = st.binary(min_size=32, max_size=32).map(NodeId)
nonces = st.binary(min_size=frames.NONCE_SIZE, max_size=frames.NONCE_SIZE)
cookies = st.binary(min_size=frames.COOKIE_SIZE, max_size=frames.COOKIE_SIZE)
keys = st.binary(min_size=frames.KEY_SIZE, max_size=frames.KEY_SIZE)
signatures = st.binary(min_size=64, max_size=64)
u32 = st.integers(0, 2**32 - 1)
nonzero_u32 = st.integers(1, 2**32 - 1)
reasons = st.sampled_from(frames.Reason)
path_nonces = st.binary(min_size=frames.PATH_NONCE_SIZE, max_size=frames.PATH_NONCE_SIZE)


def _ip(version: int, packed: bytes) -> str:
    return str(ipaddress.ip_address(packed)) if version == 4 else str(ipaddress.IPv6Address(packed))


addresses: st.SearchStrategy[Address] = st.one_of(
    st.tuples(st.binary(min_size=4, max_size=4).map(lambda b: _ip(4, b)), st.integers(0, 65535)),
    st.tuples(st.binary(min_size=16, max_size=16).map(lambda b: _ip(6, b)), st.integers(0, 65535)),
)

handshake_frames: st.SearchStrategy[frames.HandshakeFrame] = st.one_of(
    st.builds(frames.Hello, nonces, node_ids),
    st.builds(frames.Challenge, nonces, node_ids, cookies, addresses),
    st.builds(frames.Register, nonces, node_ids, cookies, keys, addresses, signatures),
    st.builds(frames.Registered, nonces, nonzero_u32, keys, u32, addresses, signatures),
    st.builds(frames.Refused, nonces, reasons),
)

session_frames: st.SearchStrategy[frames.SessionFrame] = st.one_of(
    st.builds(frames.Data, nonzero_u32, st.binary(max_size=300)),
    st.builds(frames.RelayRequest, nonzero_u32, node_ids),
    st.builds(frames.RelayAccepted, u32, nonzero_u32, node_ids),
    st.builds(frames.RequestRefused, nonzero_u32, reasons),
    st.builds(frames.Keepalive, st.integers(0, 2**64 - 1)),
    st.builds(frames.Pong, st.integers(0, 2**64 - 1), st.integers(0, 1000), addresses),
    st.builds(frames.Close, u32, reasons),
    st.builds(frames.SessionAck, nonzero_u32),
    st.builds(frames.PathChallenge, path_nonces),
    st.builds(frames.PathResponse, path_nonces),
)
