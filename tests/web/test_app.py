"""The status page's ASGI app, in-process (no server): every route, bad input included, on a
simulated internet under a mock clock."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio
from trio.testing import MockClock

from macula_nat.cli.gateway import gateway_main
from macula_nat.demo.world import SITE_LINK, World, open_world
from macula_nat.gateway import GatewayConfig
from macula_nat.identity import NodeKey
from macula_nat.net.sim import Preset, add_site, open_internet
from macula_nat.system import NatConfig, open_nat_system
from macula_nat.web import CONNECT_TIMEOUT, DemoBoard, app, demo_app, gateway_app
from macula_nat.web.events import EventStream
from tests.web.tasks import page_tasks

Message = MutableMapping[str, Any]


@asynccontextmanager
async def client(page: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=page)
    async with httpx.AsyncClient(transport=transport, base_url="http://page") as http:
        yield http


async def read_events(
    stream: EventStream, count: int, between: Any = None
) -> list[tuple[float, dict[str, Any]]]:
    """Open ``/events`` as a browser would, take ``count`` snapshots (with the time each came),
    then disconnect; ``between`` runs after the first."""
    events: list[tuple[float, dict[str, Any]]] = []
    done = trio.Event()
    started = False

    async def receive() -> Message:
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal started
        if message["type"] == "http.response.start":
            assert message["status"] == 200
            assert (b"content-type", b"text/event-stream; charset=utf-8") in message["headers"]
            started = True
            return
        text = message["body"].decode()
        if text.startswith("event: snapshot"):
            data = text.split("data: ", 1)[1]
            events.append((trio.current_time(), json.loads(data)))
            if len(events) == count:
                done.set()
            elif len(events) == 1 and between is not None:
                nursery.start_soon(between)

    async with trio.open_nursery() as nursery:
        with trio.fail_after(120):
            await stream({"type": "http", "method": "GET", "path": "/events"}, receive, send)
    assert started
    return events


async def test_page_and_its_files_are_served(autojump_clock: MockClock) -> None:
    async with open_world() as world:
        node = await world.node(Preset.FULL_CONE)
        async with client(app(node)) as http:
            page = await http.get("/")
            assert page.status_code == 200
            assert "text/html" in page.headers["content-type"]
            assert '<script src="/static/page.js"' in page.text
            script = await http.get("/static/page.js")
            assert script.status_code == 200
            assert 'new EventSource("/events")' in script.text
            assert (await http.get("/static/page.css")).status_code == 200
            assert (await http.get("/static/nothing.js")).status_code == 404
            assert (await http.get("/static/../app.py")).status_code == 404


async def test_snapshot_shows_the_node(autojump_clock: MockClock) -> None:
    async with open_world() as world:
        node = await world.node(Preset.PORT_RESTRICTED_CONE)
        async with client(app(node)) as http:
            snapshot = (await http.get("/snapshot")).json()
        profile = node.detector.profile.value
        assert profile is not None
        assert snapshot["node_id"] == node.node_id.text()
        assert snapshot["public_endpoint"] == f"{profile.public_ip}:{profile.public_port}"
        assert snapshot["profile"]["nat_type"] == str(profile.nat_type)
        assert snapshot["profile"]["confidence"] == str(profile.confidence)
        assert snapshot["cache"]["max_entries"] == node.cache.max_entries
        assert snapshot["home_relay"] is not None
        assert snapshot["connections"] == [] and snapshot["pending"] == []
        assert snapshot["relay"] is None


async def test_the_connect_form_connects_and_closes(autojump_clock: MockClock) -> None:
    async with open_world() as world:
        node = await world.node(Preset.PORT_RESTRICTED_CONE)
        peer = await world.node(Preset.RESTRICTED_CONE)
        async with client(app(node)) as http:
            answer = (await http.post("/connect", json={"peer": peer.node_id.text()})).json()
            assert answer == {"ok": True, "peer": peer.node_id.text(), "method": "relayed"}
            snapshot = (await http.get("/snapshot")).json()
            [row] = snapshot["connections"]
            assert row["peer"] == peer.node_id.text()
            assert row["method"] in ("relayed", "punched")
            # Wait for the punch (the coordinator upgrades in the background).
            with trio.fail_after(30):
                await node.coordinator.connections()[0].method.wait_value(
                    lambda m: str(m) == "punched"
                )
            [row] = (await http.get("/snapshot")).json()["connections"]
            assert (row["method"], row["upgrades"]) == ("punched", 1)
            assert row["datagrams_sent"] > 0 and row["rtt_ms"] > 0
            # The form's own encoding (a form post) works as JSON does.
            closed = await http.post("/close", data={"peer": peer.node_id.text()})
            assert closed.json() == {"ok": True, "peer": peer.node_id.text()}
            again = (await http.post("/close", json={"peer": peer.node_id.text()})).json()
            assert again["ok"] is False
            assert "no open connection" in again["error"]
            assert (await http.get("/snapshot")).json()["connections"] == []


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"peer": "xyz"}, "not a node id: a node id is 64 hex digits"),
        ({"peer": "zz" * 32}, "not a node id: a node id is hex digits"),
        ({"peer": ""}, "not a node id"),
    ],
)
async def test_malformed_node_ids_are_refused_in_words(
    body: dict[str, str], error: str, autojump_clock: MockClock
) -> None:
    async with open_world() as world:
        node = await world.node(Preset.FULL_CONE)
        async with client(app(node)) as http:
            answer = (await http.post("/connect", json=body)).json()
            assert answer["ok"] is False
            assert answer["error"].startswith(error)
            own = (await http.post("/connect", json={"peer": node.node_id.text()})).json()
            assert own == {"ok": False, "error": "that is this node's own id"}


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"not json", "application/json"),
        (b'["peer"]', "application/json"),
        (b'{"peer": 5}', "application/json"),
        (b"other=1", "application/x-www-form-urlencoded"),
        (b"x" * 5000, "application/json"),
    ],
)
async def test_bad_bodies_get_a_400_in_words(
    content: bytes, content_type: str, autojump_clock: MockClock
) -> None:
    async with open_world() as world:
        node = await world.node(Preset.FULL_CONE)
        async with client(app(node)) as http:
            for path in ("/connect", "/close"):
                response = await http.post(
                    path, content=content, headers={"content-type": content_type}
                )
                assert response.status_code == 400
                assert response.json()["ok"] is False
                assert response.json()["error"]
            assert (await http.get("/connect")).status_code == 405
            assert (await http.get("/snapshot")).status_code == 200  # the page still works


async def test_unknown_and_silent_peers_are_explained(autojump_clock: MockClock) -> None:
    async with open_world() as world:
        node = await world.node(Preset.FULL_CONE)
        # A node that published its record, then went away: it never answers.
        site = add_site(world.internet.public, Preset.RESTRICTED_CONE, link=SITE_LINK)
        gone = await silent_node(world, site.host)
        async with client(app(node)) as http:
            unknown = NodeKey.generate().node_id.text()
            answer = (await http.post("/connect", json={"peer": unknown})).json()
            assert answer["ok"] is False
            assert answer["error"].startswith(f"unknown node {unknown[:16]}: the directory has")
            started = trio.current_time()
            answer = (await http.post("/connect", json={"peer": gone})).json()
            assert answer["ok"] is False
            assert trio.current_time() - started <= CONNECT_TIMEOUT + 1
            assert answer["error"] == f"the peer did not answer within {CONNECT_TIMEOUT:g} s"
            assert (await http.get("/snapshot")).status_code == 200


async def silent_node(world: World, host: Any) -> str:
    config = NatConfig(
        stack=host,
        observers=(("198.51.100.10", 3478),),
        detect_timeout=1.0,
        directory=world.directory,
        key=NodeKey.generate(),
    )
    async with open_nat_system(config) as system:
        await system.wait_ready()
        with trio.fail_after(30):
            # The directory has no change notification: poll it, bounded.
            while await world.directory.resolve_record(system.node_id.text()) is None:  # noqa: ASYNC110
                await trio.sleep(0.05)
        return system.node_id.text()


async def test_the_stream_pushes_a_profile_change_at_once(autojump_clock: MockClock) -> None:
    """With the periodic refresh far away (60 s), the change alone brings the next snapshot,
    within a second of the detector's new profile."""
    async with open_world() as world:
        site = add_site(world.internet.public, Preset.FULL_CONE, link=SITE_LINK)
        node = await world.node_at(site.host)
        first_port = node.detector.profile.value.public_port  # type: ignore[union-attr]
        changed_at: list[float] = []

        async def change() -> None:
            site.nats[0].rebind()
            await node.detector.detect(force=True)
            changed_at.append(trio.current_time())

        stream = app(node, tick=60.0).state.events
        events = await read_events(stream, 2, change)
        (_, before), (pushed_at, after) = events
        assert before["profile"]["public_port"] == first_port
        assert after["profile"]["public_port"] != first_port
        assert pushed_at - changed_at[0] < 1.0
        assert stream.statistics().open == 0


async def test_a_closed_stream_leaves_no_task_behind(autojump_clock: MockClock) -> None:
    async with open_world() as world:
        node = await world.node(Preset.FULL_CONE)
        stream = app(node).state.events
        during: list[list[str]] = []

        async def look() -> None:
            await trio.testing.wait_all_tasks_blocked()
            during.append(page_tasks())

        for _ in range(5):
            events = await read_events(stream, 3, look)
            assert [e["node_id"] for _, e in events] == [node.node_id.text()] * 3
        assert during == [["macula_nat.web.events._cancel_on_disconnect"]] * 5
        assert page_tasks() == []
        statistics = stream.statistics()
        assert (statistics.open, statistics.served, statistics.events) == (0, 5, 15)


async def test_a_stream_ends_after_its_lifetime(autojump_clock: MockClock) -> None:
    board = DemoBoard(["a", "b"])
    stream = EventStream(board, tick=1.0, lifetime=3.5)
    sent: list[Message] = []

    async def receive() -> Message:
        await trio.sleep_forever()
        raise AssertionError

    async def send(message: Message) -> None:
        sent.append(message)

    await stream({"type": "http"}, receive, send)
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    assert sum(m.get("body", b"").startswith(b"event: snapshot") for m in sent) == 4


async def test_the_demo_page_fills_in_as_pairs_end(autojump_clock: MockClock) -> None:
    board = DemoBoard(["open", "cone", "symmetric"])
    page = demo_app(board)

    async def progress() -> None:
        board.node_ready("open", "open internet")
        await trio.sleep(0.1)
        board.pair_done("open", "cone", "direct")

    events = await read_events(page.state.events, 3, progress)
    assert events[0][1]["done"] == 0
    last = events[-1][1]
    assert last["kind"] == "demo"
    assert last["detected"]["open"] == "open internet"
    assert last["cells"][0][1] == last["cells"][1][0] == "direct"
    assert events[-1][0] < 1.0  # pushed at the changes, not at the one-second refresh
    async with client(page) as http:
        assert (await http.get("/snapshot")).json()["done"] == 1
        assert (await http.post("/connect", json={"peer": "a"})).status_code == 404  # no form


async def test_the_gateway_page_shows_relay_observer_registry_and_dht(
    autojump_clock: MockClock,
) -> None:
    async with open_internet(seed=3) as internet, trio.open_nursery() as nursery:
        host = internet.add_host(["198.51.100.10", "198.51.100.11"], link=SITE_LINK)
        config = GatewayConfig(listen=("198.51.100.10", 3478), alternate=("198.51.100.11", 3479))
        gateway = await nursery.start(
            lambda task_status: gateway_main(
                config, NodeKey.generate(), stack=host, task_status=task_status
            )
        )
        async with client(gateway_app(gateway)) as http:
            snapshot = (await http.get("/snapshot")).json()
        assert snapshot["kind"] == "gateway"
        assert snapshot["addresses"] == {
            "observer": "198.51.100.10:3478",
            "relay": "198.51.100.10:3480",
            "DHT": "198.51.100.10:3481",
        }
        assert snapshot["relay"]["limits"]["max_sessions"] == config.max_sessions
        assert snapshot["relay"]["figures"]["enabled"] is True
        assert snapshot["figures"]["observer"] == "restarting"  # no way to find it given
        assert "nodes" in snapshot["figures"]["DHT"]
        assert "relays" in snapshot["figures"]["relay registry"]
        nursery.cancel_scope.cancel()


async def test_a_node_running_a_relay_shows_its_sessions_and_limits(
    autojump_clock: MockClock,
) -> None:
    async with open_world() as world:
        node = await world.node(Preset.SYMMETRIC_RANDOM)
        peer = await world.node(Preset.SYMMETRIC_RANDOM)  # random ports both: relayed for good
        connection = await node.connector.connect(peer.node_id)
        async with client(app(node, relay=world.relay)) as http:
            snapshot = (await http.get("/snapshot")).json()
        relay = snapshot["relay"]
        assert snapshot["connections"][0]["method"] == "relayed"
        assert snapshot["connections"][0]["path"].endswith("-> relay")
        assert relay["limits"]["max_sessions"] == 1000
        assert relay["figures"]["enabled"] is True
        assert relay["figures"]["registrations"] >= 2
        [session] = relay["sessions"]
        assert {node.node_id.short(), peer.node_id.short()} == set(
            session["between"].split(" <-> ")
        )
        assert session["bytes"] > 0
        await connection.aclose()
