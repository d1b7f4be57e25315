"""PeerLink: one fixed peer address over a relay, a direct path, or both, switching underneath."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import pytest
import trio
import trio.testing

from macula_nat.connection.link import (
    LINK_ADDRESS,
    ConnectionMethod,
    DirectPath,
    LinkStatistics,
    PeerLink,
)
from macula_nat.net.address import Address
from macula_nat.net.endpoint import MAX_DATAGRAM_SIZE, UdpEndpoint
from macula_nat.relay import Reason, RelaySession, SessionClosed

LOCAL: Address = ("10.0.0.1", 4433)
PEER: Address = ("203.0.113.9", 50000)
OTHER_PEER: Address = ("198.51.100.4", 40000)


class RecordingEndpoint(UdpEndpoint):
    """A UDP endpoint that records what is sent through it and never receives anything."""

    def __init__(self, address: Address = LOCAL) -> None:
        self._address = address
        self.sent: list[tuple[bytes, Address]] = []
        self.closed = False

    @property
    def local_address(self) -> Address:
        return self._address

    async def send_to(self, data: bytes, address: Address) -> None:
        await trio.lowlevel.checkpoint()
        if self.closed:
            raise trio.ClosedResourceError("endpoint closed")
        self.sent.append((data, address))

    async def receive_from(self) -> tuple[bytes, Address]:
        await trio.sleep_forever()

    def close(self) -> None:
        self.closed = True


class FakeRelay:
    """The surface of a RelaySession that PeerLink uses: send, closed_reason, async iteration."""

    def __init__(self, session: int = 7) -> None:
        self.id = session
        self.sent: list[bytes] = []
        self.closed_reason: Reason | None = None
        self._arrive, self._arrived = trio.open_memory_channel[bytes](64)

    def push(self, payload: bytes) -> None:
        """A datagram from the peer arrives over the relay."""
        self._arrive.send_nowait(payload)

    def end(self, reason: Reason = Reason.NORMAL) -> None:
        """The session ends: sends raise SessionClosed, iteration stops after the buffer."""
        self.closed_reason = reason
        self._arrive.close()

    async def send(self, payload: bytes) -> None:
        await trio.lowlevel.checkpoint()
        if self.closed_reason is not None:
            raise SessionClosed(self.id, self.closed_reason)
        self.sent.append(payload)

    def __aiter__(self) -> FakeRelay:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self._arrived.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        if self.closed_reason is None:
            self.end()
        await trio.lowlevel.checkpoint()


def session(relay: FakeRelay) -> RelaySession:
    return cast(RelaySession, relay)


def relayed_link(buffer: int = 512) -> tuple[PeerLink, FakeRelay]:
    relay = FakeRelay()
    return PeerLink(None, LOCAL, relay=session(relay), buffer=buffer), relay


def punched(
    endpoint: UdpEndpoint,
    address: Address = PEER,
    method: ConnectionMethod = ConnectionMethod.PUNCHED,
) -> DirectPath:
    return DirectPath(endpoint, address, method)


# -- construction --------------------------------------------------------------------------------


def test_a_link_needs_a_relay_or_a_direct_path() -> None:
    with pytest.raises(ValueError, match="relay session or a direct path"):
        PeerLink(None, LOCAL)


def test_a_direct_only_link_starts_with_its_paths_method() -> None:
    link = PeerLink(
        None, LOCAL, direct=punched(RecordingEndpoint(), method=ConnectionMethod.DIRECT)
    )

    assert link.method.value is ConnectionMethod.DIRECT
    assert link.remote_address == PEER
    assert link.relay is None
    assert link.local_address == LOCAL


# -- relayed -------------------------------------------------------------------------------------


async def test_a_relayed_link_sends_through_the_relay(
    autojump_clock: trio.testing.MockClock,
) -> None:
    link, relay = relayed_link()

    await link.send_to(b"one", LINK_ADDRESS)
    await link.send_to(b"two", LINK_ADDRESS)

    assert link.method.value is ConnectionMethod.RELAYED
    assert link.remote_address is None
    assert relay.sent == [b"one", b"two"]
    assert link.statistics().sent_relayed == 2
    assert link.statistics().sent_direct == 0


async def test_a_relayed_link_receives_what_the_relay_delivers_from_the_link_address(
    autojump_clock: trio.testing.MockClock,
) -> None:
    link, relay = relayed_link()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(link.run)
        relay.push(b"hello")
        relay.push(b"world")

        with trio.fail_after(5):
            assert await link.receive_from() == (b"hello", LINK_ADDRESS)
            assert await link.receive_from() == (b"world", LINK_ADDRESS)
        nursery.cancel_scope.cancel()

    assert link.statistics().received_relayed == 2


async def test_the_relay_session_ending_closes_a_link_without_a_direct_path(
    autojump_clock: trio.testing.MockClock,
) -> None:
    link, relay = relayed_link()
    with trio.fail_after(60):  # run returns by itself once the link closes
        async with trio.open_nursery() as nursery:
            nursery.start_soon(link.run)
            await trio.sleep(1)
            relay.push(b"last words")
            relay.end(Reason.PEER_GONE)

    assert link.closed
    assert link.statistics().received_relayed == 1
    assert link.relay is None
    with pytest.raises(trio.ClosedResourceError):
        await link.receive_from()
    with pytest.raises(trio.ClosedResourceError):
        await link.send_to(b"x", LINK_ADDRESS)


async def test_the_relay_session_ending_keeps_a_link_with_a_direct_path_open(
    autojump_clock: trio.testing.MockClock,
) -> None:
    link, relay = relayed_link()
    endpoint = RecordingEndpoint()
    link.use_direct(punched(endpoint))
    with trio.fail_after(60):  # run returns by itself once the link closes
        async with trio.open_nursery() as nursery:
            nursery.start_soon(link.run)
            await trio.sleep(1)
            relay.end()
            await trio.sleep(1)

            assert not link.closed
            assert link.relay is None
            await link.send_to(b"still here", LINK_ADDRESS)
            assert endpoint.sent == [(b"still here", PEER)]

            link.drop_direct()  # no relay left to fall back to

            assert link.closed


async def test_an_attached_relay_is_read_by_run(autojump_clock: trio.testing.MockClock) -> None:
    link = PeerLink(None, LOCAL, direct=punched(RecordingEndpoint()))
    relay = FakeRelay()
    changes: list[ConnectionMethod] = []
    link.on_path_change(lambda: changes.append(link.method.value))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(link.run)
        await trio.sleep(1)
        link.attach_relay(session(relay))
        relay.push(b"via the relay")

        with trio.fail_after(5):
            assert await link.receive_from() == (b"via the relay", LINK_ADDRESS)
        nursery.cancel_scope.cancel()

    assert link.relay is session(relay)
    assert changes == [ConnectionMethod.PUNCHED]  # attaching is a change listeners hear of
    assert link.statistics().received_relayed == 1


async def test_a_relay_send_that_finds_the_session_closed_closes_the_link(
    autojump_clock: trio.testing.MockClock,
) -> None:
    link, relay = relayed_link()
    relay.end(Reason.IDLE_TIMEOUT)

    with pytest.raises(trio.ClosedResourceError) as raised:
        await link.send_to(b"x", LINK_ADDRESS)

    assert isinstance(raised.value.__cause__, SessionClosed)
    assert link.closed
    assert link.relay is None
    assert link.statistics().sent_relayed == 0
    with pytest.raises(trio.ClosedResourceError):
        await link.send_to(b"y", LINK_ADDRESS)
    with pytest.raises(trio.ClosedResourceError):
        await link.receive_from()


# -- direct --------------------------------------------------------------------------------------


async def test_use_direct_moves_sends_to_the_direct_path(
    autojump_clock: trio.testing.MockClock,
) -> None:
    link, relay = relayed_link()
    endpoint = RecordingEndpoint()

    link.use_direct(punched(endpoint))
    await link.send_to(b"straight", LINK_ADDRESS)

    assert endpoint.sent == [(b"straight", PEER)]
    assert relay.sent == []
    assert link.method.value is ConnectionMethod.PUNCHED
    assert link.remote_address == PEER
    assert link.statistics() == LinkStatistics(
        sent_direct=1,
        sent_relayed=0,
        received_direct=0,
        received_relayed=0,
        dropped=0,
        upgrades=1,
        fallbacks=0,
    )


class BatchEndpoint(RecordingEndpoint):
    """A recording endpoint whose batch sends have room for ``room`` datagrams."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room

    def send_batch_nowait(self, datagrams: Sequence[bytes], address: Address) -> int:
        if self.closed:
            raise trio.ClosedResourceError("endpoint closed")
        taken = list(datagrams[: self.room])
        self.sent += [(data, address) for data in taken]
        return len(taken)


async def test_a_batch_goes_over_the_direct_path_as_far_as_it_fits_and_never_over_the_relay(
    autojump_clock: trio.testing.MockClock,
) -> None:
    link, relay = relayed_link()
    assert link.send_batch_nowait([b"a", b"b"], LINK_ADDRESS) == 0  # relayed: send_to does it
    endpoint = BatchEndpoint(room=2)
    link.use_direct(punched(endpoint))

    assert link.send_batch_nowait([b"a", b"b", b"c"], LINK_ADDRESS) == 2
    endpoint.close()
    assert link.send_batch_nowait([b"c"], LINK_ADDRESS) == 0  # send_to falls back

    assert endpoint.sent == [(b"a", PEER), (b"b", PEER)]
    assert relay.sent == []
    assert link.statistics().sent_direct == 2


async def test_a_new_direct_path_replaces_the_old_without_another_upgrade(
    autojump_clock: trio.testing.MockClock,
) -> None:
    link, _ = relayed_link()
    first, second = RecordingEndpoint(), RecordingEndpoint()

    link.use_direct(punched(first))
    link.use_direct(punched(second, OTHER_PEER, ConnectionMethod.DIRECT))
    await link.send_to(b"x", LINK_ADDRESS)

    assert first.sent == []
    assert second.sent == [(b"x", OTHER_PEER)]
    assert link.method.value is ConnectionMethod.DIRECT
    assert link.statistics().upgrades == 1


async def test_direct_datagrams_come_out_of_receive_from(
    autojump_clock: trio.testing.MockClock,
) -> None:
    link, _ = relayed_link()
    link.use_direct(punched(RecordingEndpoint()))

    link.deliver_direct(b"punched through")

    with trio.fail_after(5):
        assert await link.receive_from() == (b"punched through", LINK_ADDRESS)
    assert link.statistics().received_direct == 1


async def test_path_change_listeners_hear_every_change(
    autojump_clock: trio.testing.MockClock,
) -> None:
    link, _ = relayed_link()
    heard: list[ConnectionMethod] = []
    also: list[None] = []
    link.on_path_change(lambda: heard.append(link.method.value))
    link.on_path_change(lambda: also.append(None))

    link.use_direct(punched(RecordingEndpoint()))
    link.use_direct(punched(RecordingEndpoint(), OTHER_PEER, ConnectionMethod.DIRECT))
    link.drop_direct()
    link.drop_direct()  # no direct path left: not a change

    assert heard == [ConnectionMethod.PUNCHED, ConnectionMethod.DIRECT, ConnectionMethod.RELAYED]
    assert len(also) == 3


async def test_drop_direct_goes_back_to_the_relay(autojump_clock: trio.testing.MockClock) -> None:
    link, relay = relayed_link()
    endpoint = RecordingEndpoint()
    link.use_direct(punched(endpoint))

    link.drop_direct()
    await link.send_to(b"relayed again", LINK_ADDRESS)

    assert not link.closed
    assert link.method.value is ConnectionMethod.RELAYED
    assert link.remote_address is None
    assert link.direct is None
    assert relay.sent == [b"relayed again"]
    assert endpoint.sent == []
    assert link.statistics().fallbacks == 1
    assert link.statistics().upgrades == 1


async def test_drop_direct_without_a_relay_closes_the_link(
    autojump_clock: trio.testing.MockClock,
) -> None:
    endpoint = RecordingEndpoint()
    link = PeerLink(None, LOCAL, direct=punched(endpoint))

    link.drop_direct()

    assert link.closed
    with pytest.raises(trio.ClosedResourceError):
        await link.send_to(b"x", LINK_ADDRESS)
    with pytest.raises(trio.ClosedResourceError):
        await link.receive_from()
    assert endpoint.sent == []


async def test_drop_direct_with_an_ended_relay_closes_the_link(
    autojump_clock: trio.testing.MockClock,
) -> None:
    link, relay = relayed_link()
    link.use_direct(punched(RecordingEndpoint()))
    relay.end()

    link.drop_direct()

    assert link.closed
    with pytest.raises(trio.ClosedResourceError):
        await link.send_to(b"x", LINK_ADDRESS)


async def test_a_closed_direct_endpoint_falls_back_to_the_relay_for_the_same_datagram(
    autojump_clock: trio.testing.MockClock,
) -> None:
    link, relay = relayed_link()
    endpoint = RecordingEndpoint()
    link.use_direct(punched(endpoint))
    endpoint.close()

    await link.send_to(b"rescued", LINK_ADDRESS)

    assert relay.sent == [b"rescued"]
    assert link.direct is None
    assert link.method.value is ConnectionMethod.RELAYED
    assert link.statistics().fallbacks == 1
    assert link.statistics().sent_relayed == 1
    assert link.statistics().sent_direct == 0


async def test_use_direct_on_a_closed_link_changes_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    link, _ = relayed_link()
    link.close()

    link.use_direct(punched(RecordingEndpoint()))

    assert link.direct is None
    assert link.statistics().upgrades == 0
    with pytest.raises(trio.ClosedResourceError):
        await link.send_to(b"x", LINK_ADDRESS)


# -- the endpoint contract -----------------------------------------------------------------------


async def test_an_oversize_datagram_is_refused(autojump_clock: trio.testing.MockClock) -> None:
    link, relay = relayed_link()

    with pytest.raises(ValueError, match="exceeds"):
        await link.send_to(bytes(MAX_DATAGRAM_SIZE + 1), LINK_ADDRESS)
    await link.send_to(bytes(MAX_DATAGRAM_SIZE), LINK_ADDRESS)

    assert MAX_DATAGRAM_SIZE == 65507
    assert [len(sent) for sent in relay.sent] == [MAX_DATAGRAM_SIZE]


async def test_datagrams_beyond_the_inbox_bound_are_dropped_and_counted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    link, _ = relayed_link(buffer=2)

    for data in (b"1", b"2", b"3"):
        link.deliver_direct(data)

    assert link.statistics().dropped == 1
    with trio.fail_after(5):
        assert await link.receive_from() == (b"1", LINK_ADDRESS)
        assert await link.receive_from() == (b"2", LINK_ADDRESS)
    with trio.move_on_after(10) as waited:
        await link.receive_from()
    assert waited.cancelled_caught  # the third is gone


async def test_closing_wakes_a_blocked_receive(autojump_clock: trio.testing.MockClock) -> None:
    link, _ = relayed_link()

    async def close_later() -> None:
        await trio.sleep(1)
        link.close()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(close_later)
        with trio.fail_after(5), pytest.raises(trio.ClosedResourceError):
            await link.receive_from()


async def test_aclose_closes_the_link(autojump_clock: trio.testing.MockClock) -> None:
    link, relay = relayed_link()

    await link.aclose()

    assert link.closed
    with pytest.raises(trio.ClosedResourceError):
        await link.send_to(b"x", LINK_ADDRESS)
    assert relay.sent == []


# -- method --------------------------------------------------------------------------------------


async def test_waiting_for_a_method_transition_wakes_on_use_direct(
    autojump_clock: trio.testing.MockClock,
) -> None:
    link, _ = relayed_link()

    async def upgrade_later() -> None:
        await trio.sleep(3)
        link.use_direct(punched(RecordingEndpoint()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(upgrade_later)
        with trio.fail_after(10):
            new, old = await link.method.wait_transition()

    assert (new, old) == (ConnectionMethod.PUNCHED, ConnectionMethod.RELAYED)
    assert trio.current_time() == pytest.approx(3)


async def test_waiting_for_a_method_transition_wakes_on_drop_direct(
    autojump_clock: trio.testing.MockClock,
) -> None:
    link, _ = relayed_link()
    link.use_direct(punched(RecordingEndpoint()))

    async def fall_back_later() -> None:
        await trio.sleep(2)
        link.drop_direct()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(fall_back_later)
        with trio.fail_after(10):
            new, old = await link.method.wait_transition()

    assert (new, old) == (ConnectionMethod.RELAYED, ConnectionMethod.PUNCHED)


# -- the non-waiting operations (issue 14) -------------------------------------------------------


class NowaitEndpoint(RecordingEndpoint):
    """A recording endpoint that also sends without waiting (a real socket with room)."""

    def send_to_nowait(self, data: bytes, address: Address) -> None:
        if self.closed:
            raise trio.ClosedResourceError("endpoint closed")
        self.sent.append((data, address))


async def test_send_to_nowait_goes_direct_and_counts() -> None:
    link, relay = relayed_link()
    direct = NowaitEndpoint()
    link.use_direct(punched(direct))

    link.send_to_nowait(b"fast", LINK_ADDRESS)

    assert direct.sent == [(b"fast", PEER)] and relay.sent == []
    assert link.statistics().sent_direct == 1


async def test_send_to_nowait_would_block_where_only_waiting_can_send() -> None:
    link, relay = relayed_link()
    with pytest.raises(trio.WouldBlock):  # relayed: the relay session's send is awaited
        link.send_to_nowait(b"x", LINK_ADDRESS)
    closed = NowaitEndpoint()
    link.use_direct(punched(closed))
    closed.close()
    with pytest.raises(trio.WouldBlock):  # send_to drops the dead path and uses the relay
        link.send_to_nowait(b"x", LINK_ADDRESS)
    await link.send_to(b"x", LINK_ADDRESS)
    assert relay.sent == [b"x"] and link.direct is None
    link.close()
    with pytest.raises(trio.ClosedResourceError):
        link.send_to_nowait(b"x", LINK_ADDRESS)


async def test_receive_batch_takes_what_the_link_holds_in_order() -> None:
    link, _ = relayed_link()
    with pytest.raises(trio.WouldBlock):
        link.receive_from_nowait()
    for i in range(5):
        link.deliver_direct(b"%d" % i)

    assert await link.receive_batch(3) == [(b"%d" % i, LINK_ADDRESS) for i in range(3)]
    assert link.receive_from_nowait() == (b"3", LINK_ADDRESS)
    assert await link.receive_batch() == [(b"4", LINK_ADDRESS)]
    link.close()
    with pytest.raises(trio.ClosedResourceError):
        link.receive_from_nowait()
