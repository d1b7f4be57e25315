"""The page's snapshot records: pure, built from values, no server, no clock."""

from __future__ import annotations

import json
import math

import attrs

from macula_nat.identity import NodeKey
from macula_nat.nat.profile import NatProfile
from macula_nat.web.snapshot import (
    ConnectionFacts,
    PendingFacts,
    SessionFacts,
    connection_row,
    gateway_snapshot,
    matrix_snapshot,
    node_snapshot,
    plain,
    profile_view,
)

A = NodeKey.generate().node_id
B = NodeKey.generate().node_id


def profile(port: int = 40000, detected_at: float = 1000.0) -> NatProfile:
    return NatProfile(
        mapping="ei",
        filtering="pd",
        allocation="pp",
        public_ip="203.0.113.7",
        public_port=port,
        detected_at=detected_at,
        confidence="high",
        nat_present=True,
        observers=(("198.51.100.10", 3478),),
    )


@attrs.frozen
class Figures:
    count: int
    peer: object
    address: tuple[str, int]
    limit: float
    nested: object = None


def test_plain_makes_records_json_ready() -> None:
    value = plain(Figures(3, A, ("::1", 5), math.inf, Figures(1, None, ("10.0.0.1", 2), 0.5)))
    assert value == {
        "count": 3,
        "peer": A.text(),
        "address": "[::1]:5",
        "limit": None,
        "nested": {
            "count": 1,
            "peer": None,
            "address": "10.0.0.1:2",
            "limit": 0.5,
            "nested": None,
        },
    }
    json.dumps(value)  # nothing left that JSON cannot hold


def test_profile_view_names_the_type_and_ages_it() -> None:
    view = profile_view(profile(detected_at=1000.0), now=1012.5)
    assert view["nat_type"] == str(profile().nat_type)
    assert view["public"] == "203.0.113.7:40000"
    assert view["age"] == 12.5
    assert view["confidence"] == "high"
    assert profile_view(None, now=5.0) is None
    # A profile stamped in the future (clock skew) is not negative in age.
    assert profile_view(profile(detected_at=2000.0), now=1000.0)["age"] == 0.0


def test_the_status_page_says_when_udp_is_blocked() -> None:
    """Issue 13: the page shows the type as "UDP blocked" and the flag itself."""
    view = profile_view(attrs.evolve(profile(), udp_blocked=True), now=1000.0)
    assert view["nat_type"] == "UDP blocked" and view["udp_blocked"] is True
    assert profile_view(profile(), now=1000.0)["udp_blocked"] is False


def test_connection_rows_say_method_path_and_age() -> None:
    facts = ConnectionFacts(
        peer=A,
        method="punched",
        rtt=0.0204,
        local_address=("10.0.0.2", 5000),
        remote_address=("203.0.113.9", 6000),
        opened_at=10.0,
        sent=7,
        received=9,
        upgrades=1,
    )
    row = connection_row(facts, now=15.0)
    assert row["method"] == "punched"
    assert row["path"] == "10.0.0.2:5000 -> 203.0.113.9:6000"
    assert row["rtt_ms"] == 20.4
    assert (row["datagrams_sent"], row["datagrams_received"], row["upgrades"]) == (7, 9, 1)
    assert row["age"] == 5.0
    relayed = connection_row(attrs.evolve(facts, remote_address=None, method="relayed"), 15.0)
    assert relayed["path"] == "10.0.0.2:5000 -> relay"


def test_node_snapshot_shows_relay_observer_and_dht_only_when_run() -> None:
    common = dict(
        node_id=A,
        profile=profile(),
        wall_now=1001.0,
        now=50.0,
        connections=[],
        pending=[PendingFacts(B, 2, 48.0, (("203.0.113.9", 6000),))],
        cache=Figures(1, None, ("1.2.3.4", 1), 0.0),
        detector=Figures(2, None, ("1.2.3.4", 1), 0.0),
        coordinator=Figures(3, None, ("1.2.3.4", 1), 0.0),
        registry=Figures(4, None, ("1.2.3.4", 1), 0.0),
    )
    plain_node = node_snapshot(**common)  # type: ignore[arg-type]
    assert plain_node["kind"] == "node"
    assert plain_node["node_id"] == A.text()
    assert plain_node["public_endpoint"] == "203.0.113.7:40000"
    assert plain_node["relay"] is None
    assert set(plain_node["figures"]) == {"detector", "coordinator", "relay registry"}
    assert plain_node["pending"] == [
        {"peer": B.text(), "attempt": 2, "targets": ["203.0.113.9:6000"], "age": 2.0}
    ]

    @attrs.frozen
    class Relay:
        sessions: int
        fairness: object

    session = SessionFacts(1, A, B, 40.0, 1200, 3)
    full = node_snapshot(  # type: ignore[arg-type]
        **common,
        relay=Relay(1, Figures(9, None, ("1.2.3.4", 1), 2.0)),
        relay_sessions=[session],
        observer=Figures(5, None, ("1.2.3.4", 1), 0.0),
        dht=Figures(6, None, ("1.2.3.4", 1), 0.0),
    )
    assert full["relay"]["limits"]["count"] == 9  # the fairness record: the relay's limits
    assert full["relay"]["figures"] == {"sessions": 1}
    assert full["relay"]["sessions"][0]["bytes"] == 1200
    assert full["relay"]["sessions"][0]["age"] == 10.0
    assert set(full["figures"]) >= {"observer", "DHT"}
    json.dumps(full)


def test_a_node_before_detection_has_no_profile_nor_endpoint() -> None:
    snapshot = node_snapshot(
        node_id=A,
        profile=None,
        wall_now=0.0,
        now=0.0,
        cache=None,
        detector=None,
        coordinator=None,
        registry=None,
    )
    assert snapshot["profile"] is None
    assert snapshot["public_endpoint"] is None


def test_gateway_snapshot_says_when_the_observer_restarts() -> None:
    @attrs.frozen
    class Relay:
        sessions: int
        fairness: object

    snapshot = gateway_snapshot(
        node_id=A,
        listen=("198.51.100.10", 3478),
        relay_address=("198.51.100.10", 3480),
        dht_address=("198.51.100.10", 3481),
        now=0.0,
        relay=Relay(0, {"max": 3}),
        relay_sessions=[],
        registry={"relays": 1},
        dht={"nodes": 4},
        observer=None,
    )
    assert snapshot["addresses"]["relay"] == "198.51.100.10:3480"
    assert snapshot["figures"]["observer"] == "restarting"
    assert snapshot["relay"]["limits"] == {"max": 3}


def test_matrix_fills_in_symmetrically() -> None:
    types = ["a", "b", "c"]
    empty = matrix_snapshot(types, {}, {})
    assert empty["cells"] == [[None] * 3] * 3
    assert (empty["done"], empty["pairs"]) == (0, 6)  # the diagonal too: same-type pairs
    methods = {("a", "c"): "punched", ("b", "b"): "relayed"}
    some = matrix_snapshot(types, {"a": "full cone", "a-2": "full cone"}, methods)
    assert some["cells"][0][2] == some["cells"][2][0] == "punched"
    assert some["cells"][1] == [None, "relayed", None]
    assert some["detected"] == {"a": "full cone", "b": None, "c": None}
    assert some["done"] == 2
