"""The status page in a real browser: headless Debian Chromium driven by selenium, on a node of
the simulated internet (real clock, 5 ms links), served by hypercorn on 127.0.0.1.

The browser sees the profile (a dual-stack node's: its IPv4 NAT's and its IPv6 firewall's),
sees it change without a reload when the node's NAT rebinds, connects to a peer behind another
NAT through the form ("connected (punched)"), and 50 page opens and closes leave none of the
page's tasks behind. ``make test`` installs Chromium (as
root); elsewhere this test skips, saying so.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import pytest
import trio

from macula_nat.demo.world import SITE_LINK, open_world
from macula_nat.net.sim import Preset, add_site
from macula_nat.web import app, serve_page
from tests.web.tasks import page_tasks

CHROMIUM: Final = Path("/usr/bin/chromium")
CHROMEDRIVER: Final = Path("/usr/bin/chromedriver")
FLAGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
WAIT: Final = 15.0
"""Seconds any one thing may take to show on the page."""

selenium = pytest.importorskip("selenium", reason="selenium missing: pip install -e '.[test]'")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="NO REAL-BROWSER TEST: /usr/bin/chromium and /usr/bin/chromedriver are missing "
    "(as root: apt-get install chromium chromium-driver; `make test` does it)",
)


@asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """A headless Chromium with a fresh profile, quit (and its profile removed) after; started
    and quit in a thread, so the simulated internet keeps running meanwhile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="macula-web-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)

    def start() -> Any:
        return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)

    driver = await in_thread(start)
    try:
        driver.set_page_load_timeout(WAIT)
        yield driver
    finally:
        with trio.CancelScope(shield=True):
            await in_thread(driver.quit)
        shutil.rmtree(profile, ignore_errors=True)


async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Selenium blocks: each call runs in a worker thread, the node keeps running."""
    return await trio.to_thread.run_sync(fn, *args)


async def wait_for(check: Callable[[], Any], what: str, within: float = WAIT) -> Any:
    """Poll ``check`` (in a thread; truthy ends it) every 50 ms, at most ``within`` seconds."""
    last = None
    with trio.move_on_after(within):
        while True:
            last = await in_thread(check)
            if last:
                return last
            await trio.sleep(0.05)
    raise AssertionError(f"not within {within} s: {what} (last seen: {last!r})")


def text_of(driver: Any, element: str) -> Callable[[], str]:
    """A reader of ``element``'s text; "" while it is missing or being replaced by a push."""
    from selenium.common.exceptions import StaleElementReferenceException

    def read() -> str:
        try:
            found = driver.find_elements("id", element)
            return str(found[0].text) if found else ""
        except StaleElementReferenceException:  # re-rendered between find and read
            return ""

    return read


async def test_the_page_in_a_real_browser() -> None:
    async with open_world(seed=5, ipv6=True) as world:
        site = add_site(world.internet.public, Preset.FULL_CONE, link=SITE_LINK)
        wall = world.internet.public.add_firewall("2001:db8:5::/64", name="fw", link=SITE_LINK)
        wall.attach(site.host, "2001:db8:5::10")  # dual stack: its IPv6 side is classified too
        node = await world.node_at(site.host)
        peer = await world.node(Preset.PORT_RESTRICTED_CONE)
        idle_server = page_tasks()
        async with trio.open_nursery() as nursery:
            page = app(node)
            url = await nursery.start(serve_page, page, ("127.0.0.1", 0))
            assert url.startswith("http://127.0.0.1:")
            serving = page_tasks()
            assert len(serving) > len(idle_server)  # the count sees the server's tasks
            async with chromium() as driver:
                await in_thread(driver.get, url)
                profile = node.detector.profile.value
                assert profile is not None
                port = text_of(driver, "profile-public-port")
                await wait_for(lambda: port() == str(profile.public_port), "the profile")
                nat_type, node_id = text_of(driver, "nat-type"), text_of(driver, "node-id")
                await wait_for(lambda: nat_type() == str(profile.nat_type), "the NAT type")
                await wait_for(lambda: node_id() == node.node_id.text(), "the node id")
                assert node.detector6 is not None
                profile6 = node.detector6.profile.value
                assert profile6 is not None
                ipv6 = text_of(driver, "profile-IPv6")
                shown6 = (
                    f"firewalled, no NAT, filtering pd, [2001:db8:5::10]:{profile6.public_port}"
                )
                await wait_for(lambda: ipv6() == shown6, "the IPv6 side's profile")

                # The NAT rebinds: the detector's next run finds a new public port, and the page
                # shows it without a reload (the marker set on this document survives).
                await in_thread(driver.execute_script, "window.sameDocument = true;")
                site.nats[0].rebind()
                changed = await node.detector.detect(force=True)
                assert changed.public_port != profile.public_port
                await wait_for(lambda: port() == str(changed.public_port), "the changed profile")
                assert await in_thread(
                    driver.execute_script, "return window.sameDocument === true;"
                )

                # The connect form: connecting, then connected, punched once the hole is open.
                field = await in_thread(driver.find_element, "id", "peer")
                await in_thread(field.send_keys, peer.node_id.text())
                button = await in_thread(driver.find_element, "id", "connect")
                await in_thread(button.click)
                status = text_of(driver, "connect-status")
                await wait_for(lambda: status() == "connected (punched)", "a punched connection")
                await in_thread(field.clear)
                await in_thread(field.send_keys, "not-a-node")
                await in_thread(button.click)
                await wait_for(lambda: status().startswith("not a node id"), "a refusal in words")

                # 50 opens and closes, each with its live feed: every stream's tasks end.
                live = text_of(driver, "live")
                served = page.state.events.statistics().served
                for _ in range(50):
                    await in_thread(driver.get, url)
                    await wait_for(lambda: live() == "live", "the live feed")
                    await in_thread(driver.get, "about:blank")
                assert page.state.events.statistics().served == served + 50
            # The browser is gone: the page's tasks are back to the idle server's.
            with trio.move_on_after(WAIT):
                while page_tasks() != serving:  # noqa: ASYNC110 (tasks have no change event)
                    await trio.sleep(0.1)
            assert page_tasks() == serving
            assert page.state.events.statistics().open == 0
            nursery.cancel_scope.cancel()
