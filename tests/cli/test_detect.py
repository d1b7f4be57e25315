"""`macula-nat detect`: one detection, printed for a person or as JSON; clear failures."""

from __future__ import annotations

import json

import pytest
from trio.testing import MockClock

from macula_nat.cli import build_parser
from macula_nat.cli.detect import describe, detect_once, run_detect
from macula_nat.nat.observer import Observer, open_observer
from macula_nat.nat.profile import NatProfile
from macula_nat.net.sim import Preset, add_site, open_internet

PRIMARY = ("198.51.100.10", 3478)
ALTERNATE = ("198.51.100.11", 3479)


async def test_detect_once_against_an_rfc5780_observer(autojump_clock: MockClock) -> None:
    async with open_internet(seed=3) as internet:
        server = internet.add_host([PRIMARY[0], ALTERNATE[0]])
        async with open_observer(Observer(server, PRIMARY, ALTERNATE)):
            host = add_site(internet.public, Preset.SYMMETRIC_SEQUENTIAL).host
            profile = await detect_once([PRIMARY], 2.0, stack=host)
    text = describe(profile)
    assert "NAT type:    symmetric" in text
    assert "allocation:  pc (port contiguity), delta 1" in text
    assert NatProfile.from_json(json.loads(json.dumps(profile.to_json()))) == profile


def test_detect_without_observers_fails_with_the_reason() -> None:
    args = build_parser().parse_args(["detect", "--timeout", "0.5"])
    with pytest.raises(SystemExit, match="connect to a gateway first") as exited:
        run_detect(args)
    assert exited.value.code != 0


def test_detect_arguments() -> None:
    args = build_parser().parse_args(
        ["detect", "--observer", "192.0.2.1:3478", "--observer", "[2001:db8::1]:3478", "--json"]
    )
    assert args.observers == [("192.0.2.1", 3478), ("2001:db8::1", 3478)] and args.json
    with pytest.raises(SystemExit):
        build_parser().parse_args(["detect", "--observer", "nonsense"])


def test_detect_output_says_when_udp_is_blocked() -> None:
    text = describe(NatProfile.blocked("10.0.0.2", 0.0))
    assert text.splitlines()[:2] == [
        "NAT type:    UDP blocked",
        "UDP:         blocked (reachable over the relay's TCP/TLS only)",
    ]
    assert "UDP:" not in describe(NatProfile("ei", "pd", "pp", "203.0.113.5", 4000, 0.0, "high"))
