"""The detector actor: shared runs, errors, subscriptions across restarts, peer observations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from macula_nat.actors import (
    Actor,
    ActorExited,
    Stop,
    Supervisor,
    open_actor,
)
from macula_nat.nat.detector import (
    AddObservation,
    Detect,
    GetLocalProfile,
    NatDetector,
    NatDetectorServer,
    NatProfileChanged,
    Subscribe,
)
from macula_nat.nat.errors import DetectionTimeout, NoObservers, NotDetected
from macula_nat.nat.observer import Observer, open_observer
from macula_nat.nat.profile import Confidence, NatProfile
from macula_nat.nat.stun_client import open_stun_client
from macula_nat.net import Address
from macula_nat.net.sim import Internet, LinkProfile, Preset, SimHost, add_site, open_internet

PRIMARY: Address = ("198.51.100.10", 3478)
ALTERNATE: Address = ("198.51.100.11", 3479)
SINGLE: Address = ("198.51.100.20", 3478)
SILENT: Address = ("198.51.100.99", 3478)
LINK = LinkProfile(latency=0.01)


@asynccontextmanager
async def world(preset: Preset, seed: int = 1) -> AsyncIterator[tuple[Internet, SimHost]]:
    """A host behind ``preset`` and two observers: RFC 5780 (two addresses) and single."""
    async with open_internet(seed=seed) as internet:
        rfc5780 = internet.add_host([PRIMARY[0], ALTERNATE[0]], link=LINK)
        single = internet.add_host([SINGLE[0]], link=LINK)
        async with (
            open_observer(Observer(rfc5780, PRIMARY, ALTERNATE)),
            open_observer(Observer(single, SINGLE)),
        ):
            yield internet, add_site(internet.public, preset, link=LINK).host


class Listener(Actor):
    """Collects NatProfileChanged messages."""

    def __init__(self) -> None:
        self.changes: list[NatProfileChanged] = []

    async def handle_info(self, message: Any) -> Stop | None:
        self.changes.append(message)
        return None

    async def handle_call(self, message: Any, caller: object) -> Any:
        return list(self.changes)


async def test_detect_classifies_and_the_profile_is_then_read_without_a_mailbox(
    autojump_clock: MockClock,
) -> None:
    async with world(Preset.PORT_RESTRICTED_CONE) as (_, host):
        detector = NatDetector(host, (PRIMARY,), timeout=2.0, wall_clock=lambda: 1234.0)
        async with open_actor(NatDetectorServer(detector)) as server:
            with pytest.raises(NotDetected):
                detector.get_local_profile()
            profile = await detector.detect()
            assert profile.classification == ("ei", "pd", "pp")
            assert profile.nat_type == "port-restricted cone"
            assert profile.detected_at == 1234.0
            handled = server.statistics().handled
            assert detector.get_local_profile() is profile
            assert await detector.detect() is profile  # known: no new run
            assert server.statistics().handled == handled + 1
            assert detector.statistics().runs == 1


async def test_concurrent_detections_share_one_probe_run(autojump_clock: MockClock) -> None:
    async with world(Preset.FULL_CONE) as (_, host):
        detector = NatDetector(host, (PRIMARY,), timeout=2.0)
        results: list[NatProfile] = []
        async with open_actor(NatDetectorServer(detector)), trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(lambda: _append(results, detector.detect(force=True)))
        assert len(results) == 10 and len({id(p) for p in results}) == 1
        assert detector.statistics().runs == 1


async def _append(results: list[NatProfile], detection: Any) -> None:
    results.append(await detection)


async def test_clear_errors_without_observers_and_when_none_answers(
    autojump_clock: MockClock,
) -> None:
    async with world(Preset.FULL_CONE) as (_, host):
        detector = NatDetector(host, (), timeout=1.0)
        async with open_actor(NatDetectorServer(detector)):
            with pytest.raises(NoObservers, match="connect to a gateway first"):
                await detector.detect()
            start = trio.current_time()
            with pytest.raises(DetectionTimeout):
                await detector.detect(observers=(SILENT,))
            assert trio.current_time() - start <= 1.5
            assert detector.statistics().failures == 1


async def test_subscribers_hear_of_changes_and_keep_hearing_after_a_restart(
    autojump_clock: MockClock,
) -> None:
    async with world(Preset.FULL_CONE) as (_, host):
        detector = NatDetector(host, (PRIMARY,), timeout=2.0)
        tree = Supervisor([detector.child_spec(name="nat_detector")], intensity=3)
        async with open_actor(tree) as sup, open_actor(Listener()) as listener:
            first_server = detector.server
            assert first_server is not None
            await first_server.call(Subscribe(listener))  # the documented message, by mailbox
            async with detector.changes.subscription() as task_events:
                first = await detector.detect()
                assert first.filtering == "ei" and first.confidence is not Confidence.LOW
                # the server crashes; its supervisor restarts it with the same handle
                with pytest.raises(ActorExited):
                    await first_server.call("no such request")
                await trio.testing.wait_all_tasks_blocked()
                assert detector.server is not first_server and detector.server is not None
                assert detector.get_local_profile() is first  # the profile survived
                # single-address observers cannot measure filtering: the profile changes
                second = await detector.detect(force=True, observers=(SINGLE,))
                assert second.filtering == "pd"
                # the first detection is no change: only first -> second is published
                assert await listener.call("changes") == [NatProfileChanged(first, second)]
                assert task_events.receive_nowait() == NatProfileChanged(first, second)
                with pytest.raises(trio.WouldBlock):
                    task_events.receive_nowait()
            assert (await sup.supervisor_statistics()).restarts == 1


@pytest.mark.parametrize("preset", [Preset.PORT_RESTRICTED_CONE, Preset.SYMMETRIC_RANDOM])
async def test_a_refresh_finding_the_same_nat_is_no_change(
    preset: Preset, autojump_clock: MockClock
) -> None:
    """On the node's own socket (``client``) the public address is the one peers see and stays
    put: a refresh that finds the same NAT publishes nothing, whatever the NAT type. After the
    NAT rebinds, an endpoint-independent mapping's new port is a change; a symmetric NAT's
    port, per destination, never is. Without ``client``, each run samples a fresh socket's
    port: no change either."""
    async with open_internet(seed=2) as internet:
        rfc5780 = internet.add_host([PRIMARY[0], ALTERNATE[0]], link=LINK)
        site = add_site(internet.public, preset, link=LINK)
        node_socket = await site.host.bind((site.host.addresses[0], 0))
        async with (
            open_observer(Observer(rfc5780, PRIMARY, ALTERNATE)),
            open_stun_client(node_socket) as client,
        ):
            for detector in (
                NatDetector(site.host, (PRIMARY,), timeout=2.0, client=client),
                NatDetector(site.host, (PRIMARY,), timeout=2.0),
            ):
                async with (
                    open_actor(NatDetectorServer(detector)),
                    detector.changes.subscription() as events,
                ):
                    first = await detector.detect()
                    ports = {first.public_port}
                    for _ in range(2):
                        ports.add((await detector.detect(force=True)).public_port)
                    assert len(ports) == (1 if detector.client else 3)
                    site.nats[0].rebind()
                    rebound = await detector.detect(force=True)
                    assert rebound.public_port not in ports
                    changes = [
                        events.receive_nowait() for _ in range(detector.statistics().changes)
                    ]
                    moved = detector.client is not None and first.mapping == "ei"
                    assert [(c.old.public_address, c.new) for c in changes] == (
                        [(first.public_address, rebound)] if moved else []
                    )
                    with pytest.raises(trio.WouldBlock):
                        events.receive_nowait()


async def test_documented_messages_work_straight_through_the_mailbox(
    autojump_clock: MockClock,
) -> None:
    async with world(Preset.RESTRICTED_CONE) as (_, host):
        detector = NatDetector(host, (PRIMARY,), timeout=2.0)
        async with open_actor(NatDetectorServer(detector)) as server:
            with pytest.raises(NotDetected):
                await server.call(GetLocalProfile())
            profile = await server.call(Detect(timeout=2.0), 10)
            assert profile.classification == ("ei", "hd", "pp")
            assert await server.call(GetLocalProfile()) is profile
            with pytest.raises(ValueError):
                AddObservation("not an ip", 5)


async def test_peer_observations_refine_or_trigger_a_fresh_detection(
    autojump_clock: MockClock,
) -> None:
    async with world(Preset.PORT_RESTRICTED_CONE) as (_, host):
        detector = NatDetector(host, (PRIMARY,), timeout=2.0)
        async with open_actor(NatDetectorServer(detector)) as server:
            profile = await detector.detect()
            detector.add_observation(profile.public_ip, profile.public_port)
            await trio.testing.wait_all_tasks_blocked()
            assert detector.statistics().runs == 1  # agreeing: no new run
            server.cast(AddObservation("203.0.113.250", profile.public_port))
            await trio.testing.wait_all_tasks_blocked()
            stats = detector.statistics()
            assert (stats.observations, stats.contradictions, stats.runs) == (2, 1, 2)


async def test_periodic_refresh(autojump_clock: MockClock) -> None:
    async with world(Preset.FULL_CONE) as (_, host):
        detector = NatDetector(
            host, (PRIMARY,), timeout=1.0, refresh_interval=300.0, detect_on_start=True
        )
        async with open_actor(NatDetectorServer(detector)):
            await trio.sleep(10)
            assert detector.statistics().runs == 1 and detector.profile.value is not None
            await trio.sleep(600)
            assert detector.statistics().runs == 3


async def test_each_detector_error_is_the_same_by_method_and_by_message(
    autojump_clock: MockClock,
) -> None:
    """The error table holds at both entry points: a ``Detect`` sent with ``server.call`` and
    its default 5 s timeout gets ``DetectionTimeout`` (not ``CallTimeout``) from silent
    observers, as ``detect()`` does; so for ``NoObservers`` and ``NotDetected``."""
    async with world(Preset.FULL_CONE) as (_, host):
        detector = NatDetector(host, (SILENT,), timeout=5.0)
        async with open_actor(NatDetectorServer(detector)) as server:
            with pytest.raises(DetectionTimeout):
                await server.call(Detect())
            with pytest.raises(DetectionTimeout):
                await detector.detect()
            with pytest.raises(DetectionTimeout):
                await server.call(Detect(timeout=60.0, reply_within=1.0), 2.0)
            with pytest.raises(NotDetected):
                await server.call(GetLocalProfile())
            with pytest.raises(NotDetected):
                detector.get_local_profile()
            with pytest.raises(ValueError, match="reply_within"):
                Detect(reply_within=0)
        bare = NatDetector(host)
        async with open_actor(NatDetectorServer(bare)) as server:
            with pytest.raises(NoObservers):
                await server.call(Detect())
            with pytest.raises(NoObservers):
                await bare.detect()


async def test_a_late_detection_still_becomes_the_profile(autojump_clock: MockClock) -> None:
    """A caller whose reply deadline passed got ``DetectionTimeout``; the run went on and its
    profile is kept for the next caller."""
    async with world(Preset.FULL_CONE) as (_, host):
        detector = NatDetector(host, (PRIMARY,), timeout=2.0)
        async with open_actor(NatDetectorServer(detector)) as server:
            with pytest.raises(DetectionTimeout):
                await server.call(Detect(reply_within=0.001))
            profile = await detector.profile.wait_value(lambda p: p is not None)
            assert await server.call(Detect()) is profile


async def test_udp_blocked_is_a_profile_change_and_a_detection_that_answers_clears_it(
    autojump_clock: MockClock,
) -> None:
    """Issue 13: the relay registry reports UDP blocked (it fell back to TCP) and later
    working; subscribers hear both, and only a detection that UDP answered clears the flag."""
    async with world(Preset.PORT_RESTRICTED_CONE) as (_, host):
        detector = NatDetector(host, (PRIMARY,), timeout=2.0, refresh_interval=None)
        async with open_actor(NatDetectorServer(detector)), open_actor(Listener()) as listener:
            detector.subscribe(listener)
            detected = await detector.detect()
            detector.set_udp_blocked(True)
            blocked = detector.get_local_profile()
            assert blocked.udp_blocked and blocked.nat_type == "UDP blocked"
            assert blocked.classification == detected.classification  # what was measured stays
            detector.set_udp_blocked(True)  # the same news again: no change
            detector.set_udp_blocked(False)  # a detection starts; UDP answers it
            cleared = await detector.profile.wait_value(
                lambda p: p is not None and not p.udp_blocked
            )
            await trio.testing.wait_all_tasks_blocked()
            assert await listener.call("changes") == [
                NatProfileChanged(detected, blocked),
                NatProfileChanged(blocked, cleared),
            ]
            assert detector.statistics().changes == 2


async def test_udp_answering_again_restarts_the_detection_its_block_silenced(
    autojump_clock: MockClock,
) -> None:
    """A run in flight when UDP comes back sent its probes (and their retransmissions) into
    the block: it is abandoned for a fresh run at once, not waited out (then the retry after
    its failure), so the profile follows UDP's return by a detection's time. The lab's node
    behind udp_blocked went direct 9.3 s after the rule's removal that way (bound 5 s)."""
    async with open_internet(seed=1) as internet:
        rfc5780 = internet.add_host([PRIMARY[0], ALTERNATE[0]], link=LINK)
        site = add_site(internet.public, Preset.UDP_BLOCKED, link=LINK)
        detector = NatDetector(
            site.host, (PRIMARY,), timeout=5.0, refresh_interval=None, detect_on_start=True
        )
        async with (
            open_observer(Observer(rfc5780, PRIMARY, ALTERNATE)),
            open_actor(NatDetectorServer(detector)),
        ):
            detector.set_udp_blocked(True)  # as the relay registry reports
            await trio.sleep(4.0)  # the first run's retransmissions are spent, in the block
            assert detector.statistics().running
            site.nats[0].udp_blocked = False
            lifted = trio.current_time()
            detector.set_udp_blocked(False)
            profile = await detector.profile.wait_value(
                lambda p: p is not None and not p.udp_blocked
            )
            took = trio.current_time() - lifted
    assert profile.nat_type == "port-restricted cone"
    assert took < 1.0, took
    assert detector.statistics().failures == 0  # the abandoned run failed nobody


async def test_a_node_no_udp_answer_ever_reached_gets_a_blocked_profile(
    autojump_clock: MockClock,
) -> None:
    async with world(Preset.FULL_CONE) as (_, host):
        detector = NatDetector(host, (SILENT,), timeout=1.0, wall_clock=lambda: 50.0)
        async with open_actor(NatDetectorServer(detector)):
            with pytest.raises(DetectionTimeout):
                await detector.detect()
            detector.set_udp_blocked(True)
            profile = detector.get_local_profile()
    assert profile == NatProfile.blocked(host.addresses[0], 50.0)
    assert profile.udp_blocked and profile.public_port == 0 and profile.confidence == "low"


async def test_a_failed_detection_is_retried_soon_not_at_the_next_refresh(
    autojump_clock: MockClock,
) -> None:
    """No observer answers the first runs (it is not up yet): the detector tries again after
    1, 2, 4 ... seconds, so the profile comes soon after the observer does, with nobody calling
    ``detect`` and the refresh five minutes away."""
    async with open_internet(seed=1) as internet:
        rfc5780 = internet.add_host([PRIMARY[0], ALTERNATE[0]], link=LINK)
        host = add_site(internet.public, Preset.FULL_CONE, link=LINK).host
        detector = NatDetector(
            host, (PRIMARY,), timeout=1.0, refresh_interval=300.0, detect_on_start=True
        )
        async with open_actor(NatDetectorServer(detector)):
            await trio.sleep(10)
            assert detector.profile.value is None
            failed = detector.statistics().failures
            assert failed >= 3  # at 0, then about 2, 4 and 8 s after each failure
            async with open_observer(Observer(rfc5780, PRIMARY, ALTERNATE)):
                up = trio.current_time()
                await detector.profile.wait_value(lambda p: p is not None)
                assert trio.current_time() - up < 20  # the next retry, not the refresh
                runs = detector.statistics().runs
                await trio.sleep(200)  # no more retries once detected
                assert detector.statistics().runs == runs


@pytest.mark.parametrize(
    ("observer", "wanted"), [(PRIMARY, "10.9.0.2"), (("2001:db8::3478", 3478), "2001:db8::10")]
)
async def test_a_blocked_profile_names_an_address_of_the_observers_ip_version(
    observer: Address, wanted: str, autojump_clock: MockClock
) -> None:
    """A dual-stack host blocked before any detection: each detector's blocked profile keeps
    its IP version (its observers'), whichever address the host lists first, so a dual-stack
    node's IPv4 profile is never taken for its IPv6 one."""
    async with open_internet(seed=9) as internet:
        host = internet.add_host(["2001:db8::10", "10.9.0.2"])
        detector = NatDetector(host, (observer,), timeout=2.0, refresh_interval=None)
        detector.set_udp_blocked(True)
        profile = detector.profile.value
        assert profile is not None and profile.udp_blocked
        assert profile.public_ip == wanted
