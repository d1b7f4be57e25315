"""The detection probe plan: run the tests against the observers concurrently, collect evidence.

Stage 1, at once, each test bounded by ``start + timeout``:

- **mapping**: one socket (the node's own, through ``client``, else a fresh one) sends a plain
  Binding to every observer: RFC 5780 test I, and the multi-observer comparison.
- **filtering**: per observer, two fresh sockets send CHANGE-REQUEST (change IP and port;
  change port only). Fresh, because the mapping tests' NAT state would let the answers in.
  Whether the observer could change its address is judged later, from its OTHER-ADDRESS.

Stage 2, as stage-1 answers arrive, each test bounded by the same deadline, or by half a
timeout from its start if that is later (a late stage 2 still gets a fair chance):

- the first observer to answer test I (the anchor) gets the **allocation** samples:
  ``allocation_samples`` fresh sockets, one Binding each, their first transmissions sent one
  after another before any other test may create a mapping, so a sequential (``pc``) NAT
  numbers them consecutively;
- then the **hairpinning** test: two fresh sockets learn their mapped addresses from the anchor
  and send probes to each other's; one arrival is enough;
- RFC 5780 tests II and III on the mapping socket, for every observer whose OTHER-ADDRESS is
  usable: to (other IP, observer port) and to OTHER-ADDRESS.

Timing (RFC 8489 section 6.2.1, :mod:`.waits`): until an observer has answered, requests to it
are retransmitted on the initial schedule (`RetransmitPolicy.for_timeout`) and bounded by the
timeout. Each answer on a first transmission is an RTT sample for its observer; once there is
one, every later test to that observer runs on `silence_policy` (retransmissions one
measured RTO apart, unanswered after a few RTOs), and the filtering tests already waiting switch
to it. The hairpin exchange, whose probes only go as far as the NAT, waits one SRTT
(`sub_path_policy`). Tests that cannot change the verdict stop early: the
hairpin test ends as soon as the mapping is seen to depend on the destination (a NAT that maps
per destination cannot be judged on hairpinning by these probes).

So a detection takes a few round trips when every test is answered, one round trip plus a few
RTOs when a NAT silences some test on purpose (at 20 ms RTT about 0.35 s), the whole ``timeout``
only when some observer never answers at all, and never more than ``1.5 * timeout``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import attrs
import trio
from trio_util import move_on_when

from macula_nat.nat.errors import DetectionTimeout, NoObservers, TransactionTimeout
from macula_nat.nat.evidence import (
    AllocationSample,
    BindingObservation,
    Evidence,
    FilteringObservation,
    HairpinObservation,
)
from macula_nat.nat.stun_client import RetransmitPolicy, StunClient, StunResponse, open_stun_client
from macula_nat.nat.waits import silence_policy, sub_path_policy
from macula_nat.net.address import Address, any_address, destination_address, ip_version
from macula_nat.net.endpoint import UdpEndpoint, UdpStack
from macula_nat.net.rtt import RttEstimate
from macula_nat.wire import stun

__all__ = ["ProbeSettings", "run_probes"]

logger = logging.getLogger(__name__)

_HAIRPIN_TRANSMISSIONS = 3
"""Hairpin probes per socket, spread over the wait: one of six arrivals is enough."""


def _non_negative(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, not {value!r}")


def _at_least_one(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name} must be at least 1, not {value!r}")


@attrs.frozen
class ProbeSettings:
    """What `run_probes` does besides the mapping tests.

    ``retransmit`` None means `RetransmitPolicy.for_timeout` of the detection timeout.
    Observers beyond ``max_observers`` are not asked.
    """

    allocation_samples: int = attrs.field(default=7, validator=_non_negative)
    """Fresh sockets for the allocation test; 7 lets one mapping taken by other traffic pass
    (:mod:`macula_nat.nat.allocation`)."""
    filtering: bool = True
    hairpinning: bool = True
    max_observers: int = attrs.field(default=4, validator=_at_least_one)
    retransmit: RetransmitPolicy | None = None


async def run_probes(
    stack: UdpStack,
    observers: Sequence[Address],
    timeout: float,
    *,
    client: StunClient | None = None,
    settings: ProbeSettings | None = None,
) -> Evidence:
    """Probe the NAT in front of ``stack`` with the observers' help; return what was seen.

    Fresh sockets are bound on ``stack`` (wildcard address, ephemeral port) and closed before
    returning. ``client``, if given, runs the mapping tests on the node's own socket (its
    receive side must be running, via `StunClient.run` or `StunClient.feed`), so the public
    address found is the one peers see. Observers of another IP version than the first are
    skipped. Raises `NoObservers` for an empty list and `DetectionTimeout` if no observer
    answered anything.
    """
    if not timeout > 0:
        raise ValueError(f"timeout must be positive, not {timeout!r}")
    settings = settings or ProbeSettings()
    chosen = _choose_observers(observers, settings.max_observers)
    probe = _Probe(stack, chosen, timeout, settings)
    await probe.run(client)
    evidence = probe.evidence(client)
    if not evidence.answered:
        shown = ", ".join(f"{ip}:{port}" for ip, port in chosen)
        raise DetectionTimeout(f"no STUN observer answered within {timeout:g} s: {shown}")
    return evidence


def _choose_observers(observers: Sequence[Address], limit: int) -> tuple[Address, ...]:
    chosen = list(dict.fromkeys(destination_address(observer) for observer in observers))
    if not chosen:
        raise NoObservers()
    version = ip_version(chosen[0][0])
    skipped = [o for o in chosen if ip_version(o[0]) != version]
    if skipped:
        logger.debug("skipping observers of another IP version: %s", skipped)
    return tuple(o for o in chosen if ip_version(o[0]) == version)[:limit]


async def _ask(
    client: StunClient,
    destination: Address,
    message: stun.Message | None = None,
    *,
    deadline: float,
    policy: RetransmitPolicy | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> StunResponse | None:
    """One transaction (on ``policy``'s schedule if given); None if it timed out."""
    try:
        return await client.request(
            destination, message, deadline=deadline, policy=policy, task_status=task_status
        )
    except TransactionTimeout:
        logger.debug("no answer from %s", destination)
        return None


def _binding(destination: Address, response: StunResponse | None) -> BindingObservation:
    if response is None:
        return BindingObservation(destination)
    return BindingObservation(
        destination,
        mapped=response.mapped_address if response.is_success else None,
        other_address=response.message.other_address,
        source=response.source,
        error=response.error_code,
        transmissions=response.transmissions,
        elapsed=response.elapsed,
    )


@attrs.define(eq=False)
class _RoundTrips:
    """One observer's RTT estimate so far; ``measured`` is set at its first sample."""

    estimate: RttEstimate | None = None
    measured: trio.Event = attrs.Factory(trio.Event)

    def add(self, response: StunResponse | None) -> None:
        """Take ``response``'s RTT as a sample if it answered a first transmission (Karn)."""
        if response is None or response.transmissions != 1:
            return
        if self.estimate is None:
            self.estimate = RttEstimate.first(response.elapsed)
        else:
            self.estimate = self.estimate.updated(response.elapsed)
        self.measured.set()


class _Probe:
    """One run's sockets and findings."""

    def __init__(
        self,
        stack: UdpStack,
        observers: tuple[Address, ...],
        timeout: float,
        settings: ProbeSettings,
    ) -> None:
        self._stack = stack
        self._observers = observers
        self._timeout = timeout
        self._settings = settings
        self._policy = settings.retransmit or RetransmitPolicy.for_timeout(timeout)
        self._any = any_address(ip_version(observers[0][0]))
        self._deadline = 0.0
        self._local_port = 0
        self._test_one: dict[Address, BindingObservation] = {}
        self._followups: dict[tuple[Address, int], BindingObservation] = {}
        self._filtering: dict[tuple[Address, bool], FilteringObservation] = {}
        self._samples: dict[int, AllocationSample] = {}
        self._hairpin: HairpinObservation | None = None
        self._anchor: Address | None = None
        self._burst_sent = trio.Event()
        self._round_trips = {observer: _RoundTrips() for observer in observers}
        self._mapped_seen: set[Address] = set()
        self._mapping_dependent = trio.Event()

    def evidence(self, client: StunClient | None) -> Evidence:
        followups = [
            self._followups[key]
            for observer in self._observers
            for key in ((observer, 2), (observer, 3))
            if key in self._followups
        ]
        return Evidence(
            observers=self._observers,
            local_ips=self._stack.addresses,
            local_port=self._local_port,
            main_socket=client is not None,
            bindings=(*(self._test_one[o] for o in self._observers), *followups),
            filtering=tuple(
                self._filtering[key]
                for observer in self._observers
                for key in ((observer, True), (observer, False))
                if key in self._filtering
            ),
            allocation=tuple(self._samples[i] for i in sorted(self._samples)),
            hairpin=self._hairpin,
        )

    async def run(self, client: StunClient | None) -> None:
        self._deadline = trio.current_time() + self._timeout
        logger.debug("probing %s, timeout %g s", self._observers, self._timeout)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._mapping_tests, nursery, client)
            if self._settings.filtering:
                for observer in self._observers:
                    nursery.start_soon(self._filtering_test, observer, True)
                    nursery.start_soon(self._filtering_test, observer, False)

    def _stage_two_deadline(self) -> float:
        """The run's deadline, or half a timeout from now if that is later."""
        return max(self._deadline, trio.current_time() + self._timeout / 2)

    async def _bind(self) -> UdpEndpoint:
        return await self._stack.bind((self._any, 0))

    def _policy_for(self, observer: Address) -> RetransmitPolicy:
        """The silence schedule once ``observer``'s RTT is known, the initial one before."""
        estimate = self._round_trips[observer].estimate
        return self._policy if estimate is None else silence_policy(estimate)

    async def _ask(
        self,
        client: StunClient,
        observer: Address,
        destination: Address,
        message: stun.Message | None = None,
        *,
        deadline: float,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> StunResponse | None:
        """One transaction with a test of ``observer`` on its current schedule; its answer is
        an RTT sample."""
        response = await _ask(
            client,
            destination,
            message,
            deadline=deadline,
            policy=self._policy_for(observer),
            task_status=task_status,
        )
        self._round_trips[observer].add(response)
        return response

    async def _ask_until_silent(
        self, client: StunClient, observer: Address, message: stun.Message
    ) -> StunResponse | None:
        """Ask for an answer a NAT may silence on purpose: on the initial schedule until the
        observer's RTT is known, then (the same transaction) on its silence schedule."""
        round_trips = self._round_trips[observer]
        if round_trips.estimate is None:
            response = None
            async with move_on_when(round_trips.measured.wait) as switched:
                response = await self._ask(
                    client, observer, observer, message, deadline=self._deadline
                )
            if not switched.cancelled_caught:
                return response
        return await self._ask(client, observer, observer, message, deadline=self._deadline)

    def _note_mapping(self, found: BindingObservation) -> None:
        """Track the mapped addresses seen on the mapping socket: two of them mean a mapping
        that depends on the destination, which ends the hairpin test early."""
        if found.mapped is None:
            return
        self._mapped_seen.add(found.mapped)
        if len(self._mapped_seen) > 1:
            self._mapping_dependent.set()

    async def _mapping_tests(self, probes: trio.Nursery, client: StunClient | None) -> None:
        if client is not None:
            self._local_port = client.endpoint.local_address[1]
            await self._mapping_tests_on(probes, client)
            return
        endpoint = await self._bind()
        self._local_port = endpoint.local_address[1]
        async with endpoint, open_stun_client(endpoint, self._policy) as own:
            await self._mapping_tests_on(probes, own)

    async def _mapping_tests_on(self, probes: trio.Nursery, client: StunClient) -> None:
        async with trio.open_nursery() as nursery:
            for observer in self._observers:
                nursery.start_soon(self._test_one_then_more, probes, nursery, client, observer)

    async def _test_one_then_more(
        self, probes: trio.Nursery, nursery: trio.Nursery, client: StunClient, observer: Address
    ) -> None:
        """RFC 5780 test I. The first observer to answer anchors the allocation burst and the
        hairpin test; then, if OTHER-ADDRESS allows, tests II and III run concurrently."""
        asked = await self._ask(client, observer, observer, deadline=self._deadline)
        found = _binding(observer, asked)
        self._test_one[observer] = found
        self._note_mapping(found)
        if not found.answered:
            return
        if self._anchor is None:
            self._anchor = observer
            await self._start_anchored(probes, observer)
        await self._burst_sent.wait()
        if found.alternate is None:
            return
        other_ip, other_port = found.alternate
        deadline = self._stage_two_deadline()
        for test, destination in ((2, (other_ip, observer[1])), (3, (other_ip, other_port))):
            nursery.start_soon(self._followup, client, observer, test, destination, deadline)

    async def _start_anchored(self, probes: trio.Nursery, anchor: Address) -> None:
        """Start the allocation samples, first transmissions in order, then the hairpin test.

        Tests that may create mappings wait for `_burst_sent`, so none lands inside the burst.
        """
        deadline = self._stage_two_deadline()
        for index in range(self._settings.allocation_samples):
            await probes.start(self._allocation_sample, index, anchor, deadline)
        self._burst_sent.set()
        if self._settings.hairpinning:
            probes.start_soon(self._hairpin_test, anchor, deadline)

    async def _allocation_sample(
        self,
        index: int,
        anchor: Address,
        deadline: float,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        endpoint = await self._bind()
        async with endpoint, open_stun_client(endpoint, self._policy) as client:
            response = await self._ask(
                client, anchor, anchor, deadline=deadline, task_status=task_status
            )
        mapped = response.mapped_address if response and response.is_success else None
        self._samples[index] = AllocationSample(endpoint.local_address[1], mapped)

    async def _followup(
        self,
        client: StunClient,
        observer: Address,
        test: int,
        destination: Address,
        deadline: float,
    ) -> None:
        response = await self._ask(client, observer, destination, deadline=deadline)
        found = _binding(destination, response)
        self._followups[(observer, test)] = found
        self._note_mapping(found)

    async def _filtering_test(self, observer: Address, change_ip: bool) -> None:
        request = stun.binding_request(change_ip=change_ip, change_port=True)
        endpoint = await self._bind()
        async with endpoint, open_stun_client(endpoint, self._policy) as client:
            response = await self._ask_until_silent(client, observer, request)
        self._filtering[(observer, change_ip)] = FilteringObservation(
            observer,
            change_ip=change_ip,
            change_port=True,
            answered_from=response.source if response and response.is_success else None,
            error=response.error_code if response else None,
        )

    async def _hairpin_test(self, anchor: Address, deadline: float) -> None:
        """Hairpinning, unless the mapping turns out to depend on the destination first."""
        async with move_on_when(self._mapping_dependent.wait):
            await self._hairpin_probe(anchor, deadline)

    async def _hairpin_probe(self, anchor: Address, deadline: float) -> None:
        first = await self._bind()
        async with first:
            second = await self._bind()
            async with second:
                endpoints = (first, second)
                mapped: dict[int, Address] = {}
                round_trips: list[float] = []
                async with trio.open_nursery() as nursery:
                    for index, endpoint in enumerate(endpoints):
                        nursery.start_soon(
                            self._hairpin_binding,
                            endpoint,
                            anchor,
                            deadline,
                            index,
                            mapped,
                            round_trips,
                        )
                if len(mapped) == len(endpoints):
                    # A hairpinned probe goes no further than the NAT: it arrives within a
                    # round trip to the observer; most NATs do not hairpin. Without a clean
                    # sample, the bindings' whole elapsed times overestimate the RTT.
                    estimate = self._round_trips[anchor].estimate or RttEstimate.first(
                        max(round_trips)
                    )
                    self._hairpin = await _hairpin_exchange(
                        endpoints,
                        (mapped[0], mapped[1]),
                        sub_path_policy(estimate, _HAIRPIN_TRANSMISSIONS),
                        deadline,
                    )

    async def _hairpin_binding(
        self,
        endpoint: UdpEndpoint,
        anchor: Address,
        deadline: float,
        index: int,
        mapped: dict[int, Address],
        round_trips: list[float],
    ) -> None:
        async with open_stun_client(endpoint, self._policy) as client:
            response = await self._ask(client, anchor, anchor, deadline=deadline)
        if response is not None and response.mapped_address is not None and response.is_success:
            mapped[index] = response.mapped_address
            round_trips.append(response.elapsed)


async def _hairpin_exchange(
    endpoints: tuple[UdpEndpoint, UdpEndpoint],
    mapped: tuple[Address, Address],
    policy: RetransmitPolicy,
    deadline: float,
) -> HairpinObservation:
    """Each endpoint sends a probe (a STUN Binding indication) to the other's mapped address, on
    ``policy``'s schedule, until one probe arrives, ``policy`` gives up or ``deadline`` passes.

    The schedule counts from the first probes' sending, so a busy host that starts late does
    not lose the wait (it is a few milliseconds on a near observer)."""
    probes = tuple(
        stun.Message(
            message_class=stun.MessageClass.INDICATION, transaction_id=stun.new_transaction_id()
        ).encode()
        for _ in endpoints
    )
    arrivals: list[Address] = []
    with trio.move_on_at(deadline):
        async with trio.open_nursery() as nursery:
            for index, endpoint in enumerate(endpoints):
                nursery.start_soon(_await_probe, endpoint, probes[1 - index], arrivals, nursery)
            for index, endpoint in enumerate(endpoints):
                await endpoint.send_to(probes[index], mapped[1 - index])
            start = trio.current_time()
            nursery.cancel_scope.deadline = start + policy.give_up_offset()
            for index, endpoint in enumerate(endpoints):
                nursery.start_soon(
                    _send_probes, endpoint, probes[index], mapped[1 - index], policy, start
                )
    return HairpinObservation(received=bool(arrivals), source=arrivals[0] if arrivals else None)


async def _send_probes(
    endpoint: UdpEndpoint,
    probe: bytes,
    destination: Address,
    policy: RetransmitPolicy,
    start: float,
) -> None:
    """The retransmissions of a probe first sent at ``start``."""
    for offset in policy.transmission_offsets()[1:]:
        await trio.sleep_until(start + offset)
        await endpoint.send_to(probe, destination)


async def _await_probe(
    endpoint: UdpEndpoint, probe: bytes, arrivals: list[Address], nursery: trio.Nursery
) -> None:
    while True:
        data, source = await endpoint.receive_from()
        if data == probe:
            arrivals.append(source)
            nursery.cancel_scope.cancel()
            return
