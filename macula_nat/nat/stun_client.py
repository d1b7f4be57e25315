"""STUN client transactions over one UDP endpoint (RFC 8489 section 6.2.1).

A `StunClient` keeps a table of pending transactions keyed by transaction id. Datagrams reach it
either from its own receive loop (`StunClient.run`, started by `open_stun_client`) or, when the
endpoint is shared with other protocols, from the caller's demultiplexer through
`StunClient.feed`. Each datagram answers at most one pending transaction; anything else
(not STUN, malformed, a request or indication, an unknown or finished transaction, a response
with unknown comprehension-required attributes) is counted and dropped. So any number of
transactions can run concurrently on one endpoint.

Requests are retransmitted on RFC 8489's schedule (RTO doubling from its initial value, at most
``Rc`` transmissions, then a final wait of ``Rm`` initial RTOs), cut short by a caller-given
deadline: a transaction never outlives ``min(deadline, schedule end)``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio

from macula_nat.nat.errors import TransactionTimeout
from macula_nat.net.address import Address, destination_address
from macula_nat.net.endpoint import UdpEndpoint
from macula_nat.wire import stun

__all__ = [
    "Asked",
    "RetransmitPolicy",
    "StunClient",
    "StunClientStatistics",
    "StunResponse",
    "open_stun_client",
]

logger = logging.getLogger(__name__)


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be positive, not {value!r}")


def _at_least_one(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name} must be at least 1, not {value!r}")


def _non_negative(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{attribute.name} must be >= 0, not {value!r}")


@attrs.frozen
class RetransmitPolicy:
    """When to (re)transmit a request and when to give up, in seconds.

    RFC 8489 defaults: the first retransmission after ``rto``, each next one after twice the
    previous interval (capped at ``max_rto``), ``max_transmissions`` (Rc) in all, and the
    transaction fails ``final_wait`` (Rm) initial RTOs after the last one: requests at 0, 0.5,
    1.5, 3.5, 7.5, 15.5 and 31.5 s, failure at 39.5 s.
    """

    rto: float = attrs.field(default=0.5, validator=_positive)
    max_transmissions: int = attrs.field(default=7, validator=_at_least_one)
    final_wait: float = attrs.field(default=16.0, validator=_non_negative)
    max_rto: float = attrs.field(default=math.inf, validator=_positive)

    @classmethod
    def for_timeout(cls, timeout: float) -> RetransmitPolicy:
        """A schedule that fits all seven transmissions well inside ``timeout``.

        The initial RTO is ``timeout / 16`` (at most RFC 8489's 500 ms) and intervals stop
        doubling at ``timeout / 8``: for 5 s, requests at 0, 0.31, 0.94, 1.56, 2.19, 2.81 and
        3.44 s. Faster than RFC 8489 asks for unknown paths, which is acceptable for detection:
        its transactions are few, idempotent and bounded by the timeout, and a lost answer
        there costs a wrong classification rather than a late one.
        """
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        rto = min(0.5, timeout / 16)
        return cls(rto=rto, max_rto=max(rto, timeout / 8))

    def transmission_offsets(self) -> tuple[float, ...]:
        """Seconds from the first transmission to each transmission, the first being 0."""
        offsets = [0.0]
        interval = min(self.rto, self.max_rto)
        for _ in range(self.max_transmissions - 1):
            offsets.append(offsets[-1] + interval)
            interval = min(interval * 2, self.max_rto)
        return tuple(offsets)

    def give_up_offset(self) -> float:
        """Seconds from the first transmission until the transaction fails unanswered."""
        return self.transmission_offsets()[-1] + self.final_wait * self.rto


@attrs.frozen
class StunResponse:
    """The response that completed a transaction, with where and when it came from."""

    message: stun.Message
    source: Address
    """Where the response datagram came from (differs from the destination after a
    CHANGE-REQUEST)."""
    destination: Address
    """Where the request was sent."""
    transmissions: int
    """Requests sent before the response arrived (1 if the first one was answered)."""
    elapsed: float
    """Seconds from the first transmission to the response."""

    @property
    def is_success(self) -> bool:
        return self.message.message_class is stun.MessageClass.SUCCESS

    @property
    def mapped_address(self) -> Address | None:
        """XOR-MAPPED-ADDRESS, or MAPPED-ADDRESS from servers that send only that."""
        return self.message.xor_mapped_address or self.message.mapped_address

    @property
    def error_code(self) -> int | None:
        return None if self.message.error is None else self.message.error.code


@attrs.frozen
class StunClientStatistics:
    """Counters of one client since it was created; ``pending`` is the number running now."""

    pending: int
    transactions: int
    transmissions: int
    responses: int
    """Datagrams that completed a transaction."""
    unmatched: int
    """Well-formed STUN that answered nothing: requests, indications, unknown or finished
    transactions, a method other than the request's."""
    malformed: int
    """Datagrams that were not STUN or not well-formed, and responses with unknown
    comprehension-required attributes (RFC 8489 section 6.3: discarded)."""


MAX_ASKED = 256
"""Destinations a client remembers in :meth:`StunClient.last_asked` (the oldest go first)."""


@attrs.frozen
class Asked:
    """The latest request a client sent to one destination, and the mapping it learned there."""

    at: float
    """Trio time of the request's first transmission."""
    mapped: Address | None
    """The mapped address of the latest success response from there (None: none yet)."""


@attrs.define(eq=False)
class _Pending:
    method: int
    answered: trio.Event = attrs.Factory(trio.Event)
    response: tuple[stun.Message, Address, float] | None = None


@attrs.define
class _Counters:
    transactions: int = 0
    transmissions: int = 0
    responses: int = 0
    unmatched: int = 0
    malformed: int = 0


class StunClient:
    """STUN transactions over one endpoint; see the module docstring."""

    def __init__(self, endpoint: UdpEndpoint, policy: RetransmitPolicy | None = None) -> None:
        self._endpoint = endpoint
        self._policy = policy or RetransmitPolicy()
        self._pending: dict[bytes, _Pending] = {}
        self._counters = _Counters()
        self._asked: dict[Address, Asked] = {}

    def __repr__(self) -> str:
        return f"<StunClient {self._endpoint.local_address} pending={len(self._pending)}>"

    @property
    def endpoint(self) -> UdpEndpoint:
        return self._endpoint

    @property
    def policy(self) -> RetransmitPolicy:
        return self._policy

    def last_asked(self, destination: Address) -> Asked | None:
        """When this client last asked ``destination`` and where it was seen then: on a
        shared socket, whether the NAT may still hold a mapping toward it."""
        return self._asked.get(destination)

    def _note(self, destination: Address, asked: Asked) -> None:
        self._asked.pop(destination, None)
        if len(self._asked) >= MAX_ASKED:
            del self._asked[next(iter(self._asked))]
        self._asked[destination] = asked

    def statistics(self) -> StunClientStatistics:
        counters = self._counters
        return StunClientStatistics(
            pending=len(self._pending),
            transactions=counters.transactions,
            transmissions=counters.transmissions,
            responses=counters.responses,
            unmatched=counters.unmatched,
            malformed=counters.malformed,
        )

    def feed(self, data: bytes, source: Address) -> bool:
        """Offer one received datagram; True if it completed a pending transaction."""
        if not stun.is_stun(data):
            self._counters.malformed += 1
            return False
        try:
            message = stun.decode(data)
        except stun.StunParseError as error:
            self._counters.malformed += 1
            logger.debug("malformed STUN from %s: %s", source, error)
            return False
        pending = self._pending.get(message.transaction_id)
        if (
            pending is None
            or pending.response is not None
            or message.message_class in (stun.MessageClass.REQUEST, stun.MessageClass.INDICATION)
            or message.method != pending.method
        ):
            self._counters.unmatched += 1
            return False
        if message.unknown_required:
            self._counters.malformed += 1
            logger.debug("response from %s has unknown required attributes", source)
            return False
        pending.response = (message, source, trio.current_time())
        pending.answered.set()
        self._counters.responses += 1
        return True

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Receive and `feed` datagrams until cancelled or the endpoint is closed."""
        task_status.started()
        while True:  # in batches: a demux view is drained as fast as it is filled
            try:
                batch = await self._endpoint.receive_batch()
            except trio.ClosedResourceError:
                return
            for data, source in batch:
                self.feed(data, source)

    async def request(
        self,
        destination: Address,
        message: stun.Message | None = None,
        *,
        deadline: float = math.inf,
        policy: RetransmitPolicy | None = None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> StunResponse:
        """Send a request (a plain Binding request by default) and return its response.

        Retransmits on the policy's schedule until a response arrives, and raises
        `TransactionTimeout` at ``deadline`` (Trio time) or when the schedule ends, whichever
        comes first. ``policy`` replaces the client's schedule for this request (a shared
        socket's client serves callers with their own timing). The first transmission always
        happens; under ``nursery.start`` the task reports started right after it, which lets a
        caller order first transmissions. A success and an error response both complete the
        transaction.
        """
        request = stun.binding_request() if message is None else message
        if request.message_class is not stun.MessageClass.REQUEST:
            raise ValueError(f"only requests start transactions, not a {request.message_class}")
        transaction_id = request.transaction_id
        if transaction_id in self._pending:
            raise ValueError(f"transaction {transaction_id.hex()} is already pending")
        destination = destination_address(destination)
        data = request.encode()
        pending = _Pending(request.method)
        self._pending[transaction_id] = pending
        self._counters.transactions += 1
        try:
            start = trio.current_time()
            transmissions = 0
            schedule = self._policy if policy is None else policy
            for offset in schedule.transmission_offsets():
                if transmissions and start + offset >= deadline:
                    break
                with trio.move_on_at(start + offset):
                    await pending.answered.wait()
                if pending.response is not None:
                    break
                await self._endpoint.send_to(data, destination)
                transmissions += 1
                self._counters.transmissions += 1
                if transmissions == 1:
                    known = self._asked.get(destination)
                    self._note(destination, Asked(start, known.mapped if known else None))
                    task_status.started()
            with trio.move_on_at(min(deadline, start + schedule.give_up_offset())):
                await pending.answered.wait()
            if pending.response is None:
                raise TransactionTimeout(
                    f"no response from {destination[0]}:{destination[1]} after "
                    f"{transmissions} transmissions in {trio.current_time() - start:.3g} s"
                )
            response, source, arrived = pending.response
            answer = StunResponse(
                message=response,
                source=source,
                destination=destination,
                transmissions=transmissions,
                elapsed=arrived - start,
            )
            if answer.is_success and answer.mapped_address is not None:
                self._note(destination, Asked(start, answer.mapped_address))
            return answer
        finally:
            del self._pending[transaction_id]


@asynccontextmanager
async def open_stun_client(
    endpoint: UdpEndpoint, policy: RetransmitPolicy | None = None
) -> AsyncIterator[StunClient]:
    """A `StunClient` whose receive loop runs for the duration of the block.

    The block owns the endpoint's receiving; leaving it stops the loop (the endpoint stays
    open: close it yourself).
    """
    client = StunClient(endpoint, policy)
    async with trio.open_nursery() as nursery:
        await nursery.start(client.run)
        yield client
        nursery.cancel_scope.cancel()
