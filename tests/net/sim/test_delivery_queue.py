"""The clock-driven delivery queue: due order, ties in scheduling order, on the mock clock."""

from __future__ import annotations

import trio
import trio.testing

from macula_nat.net.sim.delivery_queue import DeliveryQueue


async def test_calls_run_at_their_time_in_order(autojump_clock: trio.testing.MockClock) -> None:
    queue = DeliveryQueue()
    calls: list[tuple[str, float]] = []

    def note(label: str) -> None:
        calls.append((label, trio.current_time()))

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        await nursery.start(queue.run)
        queue.call_at(start + 2.0, note, "late")
        queue.call_at(start + 1.0, note, "tie-first")
        queue.call_at(start + 1.0, note, "tie-second")
        queue.call_at(start - 5.0, note, "overdue")
        await trio.sleep(1.5)
        queue.call_at(start + 1.75, note, "added-later")
        await trio.sleep(1.0)
        assert len(queue) == 0
        nursery.cancel_scope.cancel()

    assert calls == [
        ("overdue", start),
        ("tie-first", start + 1.0),
        ("tie-second", start + 1.0),
        ("added-later", start + 1.75),
        ("late", start + 2.0),
    ]


async def test_a_call_may_schedule_another_for_now(autojump_clock: trio.testing.MockClock) -> None:
    queue = DeliveryQueue()
    hops: list[float] = []

    def hop(remaining: int) -> None:
        hops.append(trio.current_time())
        if remaining:
            queue.call_at(trio.current_time(), hop, remaining - 1)

    async with trio.open_nursery() as nursery:
        await nursery.start(queue.run)
        queue.call_at(trio.current_time() + 3.0, hop, 3)
        await trio.sleep(4.0)
        nursery.cancel_scope.cancel()

    assert len(hops) == 4
    assert len(set(hops)) == 1
