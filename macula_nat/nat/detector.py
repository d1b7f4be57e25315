"""NatDetector: classifies the local NAT and tells subscribers when that changes.

The Python mirror of the Erlang ``macula_nat_detector``. The :class:`NatDetector` handle owns
what must outlive a crash: the current profile (a trio-util ``AsyncValue``), the evidence behind
it, the ``nat_profile_changed`` topic and its subscriptions. It hands itself to each incarnation
of its :class:`NatDetectorServer` actor, which runs the probes (:mod:`.probe`) and classifies
them (:mod:`.classify`). A restart therefore keeps the profile and every subscription.

Users may call the handle's methods or send the documented messages (:class:`Detect`,
:class:`GetLocalProfile`, :class:`AddObservation`, :class:`Refresh`, :class:`Subscribe`,
:class:`Unsubscribe`) straight to the server's mailbox; both are the same API.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any, Final

import attrs
import trio
from trio_util import AsyncValue

from macula_nat.actors import (
    NOREPLY,
    Actor,
    ActorRef,
    Caller,
    Fail,
    Served,
    Stop,
    Topic,
)
from macula_nat.net import Address, UdpStack, normalise_ip
from macula_nat.net.address import ANY_IPV4, ANY_IPV6, ip_version, normalise_addresses

from .classify import classify, contradicts
from .errors import DetectionError, DetectionTimeout, NoObservers, NotDetected
from .evidence import Evidence
from .probe import ProbeSettings, run_probes
from .profile import NatProfile
from .stun_client import StunClient

logger = logging.getLogger(__name__)

_CALL_MARGIN: Final = 5.0
"""Extra call time on top of a detection's own bound (probes take at most 1.5 x timeout)."""


# -- the documented messages -------------------------------------------------------------------


DEFAULT_REPLY_WITHIN: Final = 4.5
"""A :class:`Detect` sent with ``server.call(Detect())`` is answered inside the call's 5 s."""


def _observers(value: Any) -> tuple[Address, ...] | None:
    return None if value is None else normalise_addresses(value)


def _timeout(_: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and not 0 < value < math.inf:
        raise ValueError(f"{attribute.name} must be a positive number of seconds, not {value!r}")


@attrs.frozen
class Detect:
    """Call: classify the NAT and reply with the :class:`NatProfile`.

    Without ``force`` a known profile is returned at once. Concurrent detections share one probe
    run. ``timeout`` bounds each probe (default: the detector's); ``observers`` replaces the
    configured observers for this run. The reply comes within ``reply_within`` seconds (the
    default fits ``ActorRef.call``'s default 5 s timeout): when the run has not finished by
    then the caller gets :class:`DetectionTimeout`, as from :meth:`NatDetector.detect` (the run
    goes on, and its profile is kept).
    """

    force: bool = False
    timeout: float | None = attrs.field(default=None, validator=_timeout)
    observers: tuple[Address, ...] | None = attrs.field(default=None, converter=_observers)
    reply_within: float = attrs.field(default=DEFAULT_REPLY_WITHIN, validator=_timeout)


@attrs.frozen
class GetLocalProfile:
    """Call: the current profile, or :class:`NotDetected` raised in the caller."""


@attrs.frozen
class AddObservation:
    """Cast: a peer saw this node's traffic come from ``ip:port`` (its reflexive address).

    Agreeing reports raise the profile's confidence; a report that contradicts it (another
    public IP, or another port behind an endpoint-independent mapping) starts a fresh detection.
    """

    ip: str = attrs.field(converter=normalise_ip)
    port: int = attrs.field(validator=[attrs.validators.ge(1), attrs.validators.le(65535)])


@attrs.frozen
class Refresh:
    """Cast: start a detection in the background (if none is running). ``restart``: also when
    one is running, which is abandoned for the fresh one (its callers get the fresh one's
    answer): what it measures changed under it (UDP answers again, its probes went into the
    block)."""

    restart: bool = False


@attrs.frozen
class Subscribe:
    """Call: deliver :class:`NatProfileChanged` to ``ref``'s mailbox from now on."""

    ref: ActorRef


@attrs.frozen
class Unsubscribe:
    """Call: stop delivering to ``ref``."""

    ref: ActorRef


@attrs.frozen
class NatProfileChanged:
    """Info message to subscribers: the classification or public address changed.

    Only changes are published: the first detection is not a change (there was nothing to
    change from), so ``old`` is always a profile and a handler may read its fields; the first
    profile is :meth:`NatDetector.get_local_profile` (or ``detector.profile``).
    """

    old: NatProfile
    new: NatProfile


@attrs.frozen
class DetectorStatistics:
    runs: int
    """Probe runs started (shared by every detect call that joined them)."""
    failures: int
    observations: int
    """Reflexive addresses reported by peers."""
    contradictions: int
    """Reports that contradicted the profile and triggered a fresh detection."""
    changes: int
    """``nat_profile_changed`` events published."""
    running: bool


class _Tick:
    """The periodic refresh timer."""


@attrs.frozen(eq=False)
class _Overdue:
    """A :class:`Detect` caller's reply deadline passed."""

    caller: Caller


_TICK: Final = _Tick()


class _Retry:
    """Detect again after a failed run."""


_RETRY: Final = _Retry()
RETRY_FIRST: Final = 1.0
"""Seconds after a failed detection before the next; doubled after each failure in a row, up
to :data:`RETRY_MOST`. A run that no observer answered (a lost burst, an observer restarting, a
network still coming up) is then not left until the next refresh, minutes away."""
RETRY_MOST: Final = 60.0


# -- the handle ---------------------------------------------------------------------------------


class NatDetector(Served):
    """The local NAT's profile, kept current by its server actor.

    ``observers`` are the STUN observers to probe (gateways run them); ``timeout`` bounds each
    probe of a detection; a detection runs every ``refresh_interval`` seconds (None: only on
    request) and once at start when ``detect_on_start``. ``wall_clock`` stamps
    ``detected_at`` (UNIX seconds). ``client``, a running STUN client on the node's own socket,
    carries the mapping tests, so the public address found is the one peers see and stays the
    same from one detection to the next while the NAT keeps the mapping (else each run samples
    a fresh socket's).
    """

    default_id = "nat_detector"

    def __init__(
        self,
        stack: UdpStack,
        observers: tuple[Address, ...] = (),
        *,
        timeout: float = 5.0,
        refresh_interval: float | None = 300.0,
        detect_on_start: bool = False,
        probe_settings: ProbeSettings | None = None,
        wall_clock: Callable[[], float] = time.time,
        client: StunClient | None = None,
        changes: Topic[NatProfileChanged] | None = None,
    ) -> None:
        super().__init__()
        _timeout(None, attrs.fields(Detect).timeout, timeout)
        if refresh_interval is not None and not refresh_interval > 0:
            raise ValueError(f"refresh_interval must be positive, not {refresh_interval!r}")
        self.stack = stack
        self.observers = normalise_addresses(observers)
        self.timeout = timeout
        self.refresh_interval = refresh_interval
        self.detect_on_start = detect_on_start
        self.probe_settings = probe_settings or ProbeSettings()
        self.wall_clock = wall_clock
        self.client = client
        self.profile: AsyncValue[NatProfile | None] = AsyncValue(None)
        """The current profile, for tasks: ``await detector.profile.wait_value(...)``."""
        self.changes: Topic[NatProfileChanged] = (
            changes if changes is not None else Topic("nat_profile_changed")
        )
        """Every change, for actors (:meth:`subscribe`) and tasks (``changes.subscription()``);
        ``changes`` given: another detector's topic (a dual-stack node's IPv6 detector publishes
        where its IPv4 one does; the profile's ``public_ip`` tells the version)."""
        self.mapped: Address | None = None
        """The public address of the port mapping a :class:`~macula_nat.portmap.PortMapper`
        holds for the node's socket (and STUN confirmed); every profile carries it."""
        self.udp_blocked = False
        """Whether the node's relay registry found UDP blocked (:meth:`set_udp_blocked`);
        every profile carries it until a detection gets UDP answers again."""
        self._evidence: Evidence | None = None
        self._running = False
        self._runs = 0
        self._failures = 0
        self._observations = 0
        self._contradictions = 0
        self._changes = 0

    def __repr__(self) -> str:
        profile = self.profile.value
        return f"<NatDetector {profile.nat_type if profile else 'undetected'}>"

    async def detect(
        self,
        force: bool = False,
        timeout: float | None = None,
        observers: tuple[Address, ...] | None = None,
    ) -> NatProfile:
        """Classify the NAT (see :class:`Detect`). Raises :class:`NoObservers` without
        observers and :class:`DetectionTimeout` when none answers."""
        run_bound = 1.5 * (timeout or self.timeout) + 1.0
        request = Detect(force, timeout, observers, reply_within=run_bound)
        profile: NatProfile = await self._server_or_raise().call(request, run_bound + _CALL_MARGIN)
        return profile

    def get_local_profile(self) -> NatProfile:
        """The current profile at once (no mailbox); :class:`NotDetected` before the first."""
        profile: NatProfile | None = self.profile.value
        if profile is None:
            raise NotDetected("the NAT has not been detected yet: call detect() first")
        return profile

    def add_observation(self, ip: str, port: int) -> None:
        """Report a peer-observed reflexive address (see :class:`AddObservation`)."""
        self._server_or_raise().cast(AddObservation(ip, port))

    def refresh(self) -> None:
        """Start a background detection (see :class:`Refresh`)."""
        self._server_or_raise().cast(Refresh())

    def subscribe(self, ref: ActorRef) -> None:
        """Deliver :class:`NatProfileChanged` to ``ref`` until it unsubscribes or exits."""
        self.changes.subscribe(ref)

    def unsubscribe(self, ref: ActorRef) -> None:
        self.changes.unsubscribe(ref)

    def statistics(self) -> DetectorStatistics:
        return DetectorStatistics(
            runs=self._runs,
            failures=self._failures,
            observations=self._observations,
            contradictions=self._contradictions,
            changes=self._changes,
            running=self._running,
        )

    def set_mapped(self, mapped: Address | None) -> None:
        """Set (or with None clear) the port mapping the current and later profiles carry;
        a change of it is a ``nat_profile_changed`` (peers learn to dial it)."""
        self.mapped = mapped
        profile = self.profile.value
        if profile is not None and profile.mapped != mapped:
            self._apply(profile, None)

    def set_udp_blocked(self, blocked: bool) -> None:
        """The relay registry found no relay answering over UDP (True: it holds the home
        relay over TCP/TLS) or UDP answering again (False). The profile says so, a change is
        a ``nat_profile_changed``; a node never detected gets :meth:`NatProfile.blocked`. On
        False a detection starts (the profile of a blocked node measured nothing), and its
        profile, when UDP answers, replaces the blocked one."""
        if blocked == self.udp_blocked:
            return
        self.udp_blocked = blocked
        logger.warning("UDP %s", "blocked: reachable over the relay's TCP/TLS only" if blocked
                       else "answers again: detecting the NAT")  # fmt: skip
        profile = self.profile.value
        if blocked:
            if profile is None:
                profile = NatProfile.blocked(self._local_ip(), self.wall_clock())
            self._apply(profile, None)
            return
        server = self.server
        if server is not None and server.alive and self.observers:
            server.cast(Refresh(restart=True))  # a run in flight sent into the block

    def _local_ip(self) -> str:
        """This host's first address of the observers' IP version (a dual-stack node's IPv4
        detector names an IPv4 address, its IPv6 one an IPv6 address), else that wildcard."""
        version = ip_version(self.observers[0][0]) if self.observers else 4
        return next(
            (ip for ip in self.stack.addresses if ip_version(ip) == version),
            ANY_IPV4 if version == 4 else ANY_IPV6,
        )

    def _attach(self, server: ActorRef) -> None:
        super()._attach(server)
        self._running = False  # a run of a dead incarnation died with it

    def _apply(self, profile: NatProfile, evidence: Evidence | None) -> NatProfile:
        """Make ``profile`` (with the port mapping) current and return it; publish a change if
        the behaviour, address or mapping moved."""
        old = self.profile.value
        if evidence is not None:
            self._evidence = evidence
        if profile.mapped != self.mapped:
            profile = attrs.evolve(profile, mapped=self.mapped)
        if evidence is not None:
            self.udp_blocked = False  # observers answered over UDP
        if self.udp_blocked and not profile.udp_blocked:
            profile = attrs.evolve(profile, udp_blocked=True)
        self.profile.value = profile
        if old is None:
            logger.info("NAT detected: %s at %s:%d", profile.nat_type, *profile.public_address)
        elif profile.changed_from(old):
            self._changes += 1
            logger.info(
                "NAT profile changed: %s -> %s%s", old.nat_type, profile.nat_type,
                f" (port mapping {old.mapped} -> {profile.mapped})"
                if old.mapped != profile.mapped else "",
            )  # fmt: skip
            self.changes.publish(NatProfileChanged(old, profile))
        return profile


# -- the server ---------------------------------------------------------------------------------


class NatDetectorServer(Actor):
    """The actor behind a :class:`NatDetector`: runs one probe run at a time, shared by callers."""

    def __init__(self, detector: NatDetector) -> None:
        self.detector = detector
        self._waiting: dict[Caller, trio.CancelScope] = {}
        """Callers of the run in flight, each with its reply deadline's timer."""
        self._failed_in_a_row = 0
        self._retry: trio.CancelScope | None = None
        self._run_scope: trio.CancelScope | None = None
        """The run in flight's, to abandon it (:class:`Refresh` with ``restart``)."""

    async def init(self) -> None:
        self.detector._attach(self.ref)
        if self.detector.refresh_interval is not None:
            self.send_after(self.detector.refresh_interval, _TICK)
        if self.detector.detect_on_start and self.detector.observers:
            self._start_run(self.detector.observers, self.detector.timeout)

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        detector = self.detector
        if isinstance(message, Detect):
            current = detector.profile.value
            if current is not None and not message.force:
                return current
            observers = message.observers or detector.observers
            if not observers:
                return Fail(NoObservers())
            self._waiting[caller] = self.send_after(message.reply_within, _Overdue(caller))
            self._start_run(observers, message.timeout or detector.timeout)
            return NOREPLY
        if isinstance(message, GetLocalProfile):
            try:
                return detector.get_local_profile()
            except NotDetected as exc:
                return Fail(exc)
        if isinstance(message, Subscribe):
            detector.subscribe(message.ref)
            return None
        if isinstance(message, Unsubscribe):
            detector.unsubscribe(message.ref)
            return None
        return await super().handle_call(message, caller)

    async def handle_cast(self, message: Any) -> Stop | None:
        if isinstance(message, AddObservation):
            self._observe(message.ip, message.port)
            return None
        if isinstance(message, Refresh):
            if self.detector.observers:
                if message.restart and self._run_scope is not None:
                    self._run_scope.cancel()  # its callers wait on for the fresh run
                    self._run_scope = None
                    self.detector._running = False
                self._start_run(self.detector.observers, self.detector.timeout)
            return None
        return await super().handle_cast(message)

    async def handle_info(self, message: Any) -> Stop | None:
        if message is _TICK:
            if self.detector.observers:
                self._start_run(self.detector.observers, self.detector.timeout)
            assert self.detector.refresh_interval is not None
            self.send_after(self.detector.refresh_interval, _TICK)
            return None
        if message is _RETRY:
            self._retry = None
            if self.detector.observers:
                self._start_run(self.detector.observers, self.detector.timeout)
            return None
        if isinstance(message, _Overdue):
            if self._waiting.pop(message.caller, None) is not None:
                message.caller.fail(
                    DetectionTimeout("no STUN observer answered before the reply deadline")
                )
            return None
        return await super().handle_info(message)

    def _start_run(self, observers: tuple[Address, ...], timeout: float) -> None:
        if self.detector._running:
            return  # callers that arrive now share the run in flight
        self.detector._running = True
        self.detector._runs += 1
        self.start_soon(self._run, observers, timeout)

    async def _run(self, observers: tuple[Address, ...], timeout: float) -> None:
        detector = self.detector
        evidence: Evidence | None = None
        result: NatProfile | DetectionError
        with trio.CancelScope() as scope:
            self._run_scope = scope
            try:
                evidence = await run_probes(
                    detector.stack,
                    observers,
                    timeout,
                    client=detector.client,
                    settings=detector.probe_settings,
                )
                result = classify(evidence).to_profile(detector.wall_clock())
            except DetectionError as exc:
                result = exc
            self._run_scope = None
            self._finish_run(result, evidence)

    def _finish_run(self, result: NatProfile | DetectionError, evidence: Evidence | None) -> None:
        """Runs in the probe task, synchronously: serialised with the handlers all the same."""
        self.detector._running = False
        waiting, self._waiting = self._waiting, {}
        for timer in waiting.values():
            timer.cancel()
        if isinstance(result, DetectionError):
            self.detector._failures += 1
            logger.warning("NAT detection failed: %s", result)
            for caller in waiting:
                caller.fail(type(result)(*result.args))  # one exception object per caller
            self._retry_later()
            return
        self._failed_in_a_row = 0
        if self._retry is not None:  # another caller's run succeeded first
            self._retry.cancel()
            self._retry = None
        result = self.detector._apply(result, evidence)
        for caller in waiting:
            caller.reply(result)

    def _retry_later(self) -> None:
        """After a failure, the next run in :data:`RETRY_FIRST` doubling to
        :data:`RETRY_MOST` seconds (one timer at a time; none without configured observers)."""
        if not self.detector.observers or self._retry is not None:
            return
        delay = min(RETRY_FIRST * 2**self._failed_in_a_row, RETRY_MOST)
        self._failed_in_a_row += 1
        self._retry = self.send_after(delay, _RETRY)

    def _observe(self, ip: str, port: int) -> None:
        detector = self.detector
        detector._observations += 1
        evidence = detector._evidence
        if evidence is None:
            return  # nothing to refine yet; the first detection will see for itself
        evidence = evidence.with_peer_observation(ip, port)
        result = classify(evidence)
        if contradicts(evidence, result, ip, port):
            detector._contradictions += 1
            logger.info(
                "a peer saw us at %s:%d: the NAT mapping changed; detecting again", ip, port
            )
            detector._evidence = evidence
            if detector.observers:
                self._start_run(detector.observers, detector.timeout)
            return
        detector._apply(result.to_profile(detector.wall_clock()), evidence)


NatDetector.server_class = NatDetectorServer  # defined after the handle it serves
