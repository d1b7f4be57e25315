"""The relay, sans-IO: registrations, sessions, authentication, limits and forwarding decisions.

:class:`RelayCore` takes each datagram with its source and the time, and returns the datagrams
to send; it never touches a socket or a clock. What the actor shell must do besides sending
(start a session's actor, run the user's callbacks, stop an actor) is queued in
:attr:`RelayCore.effects`. The shell (:mod:`macula_nat.relay.node`) owns the sockets, the timers
and the actors.

Rules it keeps:

- Only registered nodes are served: every DATA or CONTROL frame must carry a tag under its
  registration's key and a counter the replay window has not seen (:mod:`.link`); anything else
  is dropped and counted. Handshake and STUN datagrams are rate-limited per source IP before
  any work, and the relay never answers with more bytes than it received (HELLO is padded).
- A session joins two registered nodes. DATA from one member goes to the other, re-sealed for
  the other's registration, if the session's token bucket has room; its payload is never read.
- Limits: ``max_sessions`` in all, ``max_sessions_per_node`` per node, a byte bucket per
  session, total and idle timeouts (timed by the session's actor), registration expiry
  (``registration_ttl``) and liveness (``liveness_timeout``), checked by :meth:`sweep`.
- Fair shares per source (an IPv4 address, an IPv6 /64; :mod:`.shares`): when the table is
  full, a source holding its share of registrations (or of sessions it started) is refused
  (``source_share``), and a source under its share takes one from the largest holder if that
  one is over its share; the evicted node (both members of an evicted session) hears CLOSE
  ``source_share``, so it goes elsewhere rather than being black-holed.
- Roaming: an authentic, newest frame from a new source address does not move a registration.
  The relay sends a PATH_CHALLENGE with a fresh single-use nonce to that address and keeps
  serving the old one; only a PATH_RESPONSE with that nonce, authentic and from that address,
  moves it (RFC 9000 8.2). A genuine frame replayed from elsewhere proves nothing.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Container
from typing import TYPE_CHECKING, Final

import attrs

from macula_nat.holdings import Holdings
from macula_nat.identity import NodeId, NodeKey
from macula_nat.nat.binding import ObserverAddresses, Outcome, answer
from macula_nat.nat.rate_limit import TokenBuckets
from macula_nat.net.address import Address, source_prefix

from .frames import (
    DATA_OVERHEAD,
    SEALED_HEADER_SIZE,
    TAG_SIZE,
    Challenge,
    Close,
    DirectoryAnswer,
    DirectoryQuery,
    DirectoryStatus,
    FrameError,
    FrameType,
    Hello,
    Keepalive,
    PathChallenge,
    PathResponse,
    Pong,
    Reason,
    Refused,
    Register,
    RelayAccepted,
    RelayRequest,
    RequestRefused,
    SessionAck,
    SessionFrame,
    decode,
    decode_body,
    encode,
)
from .handshake import CookieJar, CookieVerdict, accept_registration
from .limits import ByteBucket, admit
from .link import Link, Verdict
from .settings import RelayConfig, RelaySettings
from .shares import Evict, Refuse, Shares, share_of
from .statistics import Counters, FairnessStatistics, RelayStatistics

if TYPE_CHECKING:
    from macula_nat.actors import ActorRef

__all__ = [
    "DirectoryAsked",
    "NodeRegistration",
    "RelayCore",
    "RelayedSession",
    "SessionEnded",
    "SessionOpened",
]

Send = tuple[bytes, Address]

_DATA: Final = int(FrameType.DATA)
_CONTROL: Final = int(FrameType.CONTROL)
_SEALED_HEADER: Final = struct.Struct(">BIQ")
_SESSION: Final = struct.Struct(">I")
_DATA_MINIMUM: Final = DATA_OVERHEAD
_PAYLOAD_START: Final = SEALED_HEADER_SIZE + _SESSION.size
_NEWEST: Final = Verdict.NEWEST
_ACCEPTED: Final = Verdict.ACCEPTED
_REPLAYED: Final = Verdict.REPLAYED
_ID_ATTEMPTS: Final = 64
_PATH_NONCE_SIZE: Final = 8
_EVICTION_SAMPLE: Final = 8
"""Evictions pick the least recently heard of a source's 8 longest-held slots (sampled, as Redis
approximates LRU), so one costs the same whether the source holds 20 or 10,000."""
_NOTHING: Final[list[Send]] = []
"""Returned for "send nothing"; never appended to."""


class PathProbe:
    """A path challenge on trial: its nonce, when it was issued (its lifetime runs from there)
    and when it was last sent."""

    __slots__ = ("issued_at", "nonce", "sent_at")

    def __init__(self, nonce: bytes, now: float) -> None:
        self.nonce = nonce
        self.issued_at = now
        self.sent_at = now


class NodeRegistration:
    """One registered node: its link, where it is, and until when."""

    __slots__ = (
        "address",
        "answer",
        "cookie",
        "expires_at",
        "last_heard",
        "link",
        "node_id",
        "probes",
        "registered_at",
        "source",
    )

    def __init__(
        self,
        node_id: NodeId,
        link: Link,
        address: Address,
        cookie: bytes,
        answer: bytes,
        now: float,
        ttl: float,
    ) -> None:
        self.node_id = node_id
        self.link = link
        self.address = address
        self.cookie = cookie
        self.answer = answer
        """The REGISTERED sent; sent again for a retransmitted REGISTER."""
        self.registered_at = now
        self.expires_at = now + ttl
        self.last_heard = now
        self.source = source_prefix(address[0])
        """The source it is accounted to (:func:`source_prefix` of the address it registered
        from)."""
        self.probes: dict[Address, PathProbe] = {}
        """New addresses the node's frames came from, each on trial with a path challenge."""


class RelayedSession:
    """One relayed session between ``a`` (who asked) and ``b`` (the target)."""

    __slots__ = (
        "a",
        "actor",
        "b",
        "bucket",
        "bytes_a_to_b",
        "bytes_b_to_a",
        "confirmed",
        "datagrams",
        "deadline",
        "id",
        "idle_timeout",
        "last_active",
        "notices",
        "request",
        "source",
        "started_at",
    )

    def __init__(
        self,
        id: int,
        a: NodeId,
        b: NodeId,
        request: int,
        settings: RelaySettings,
        now: float,
        source: str,
    ) -> None:
        self.id = id
        self.source = source
        """The source it is accounted to: the initiator's registration's."""
        self.a = a
        self.b = b
        self.request = request
        self.started_at = now
        self.last_active = now
        self.deadline = now + settings.session_timeout
        self.idle_timeout = settings.idle_timeout
        self.bucket = ByteBucket(settings.bandwidth_limit, settings.burst, now)
        self.bytes_a_to_b = 0
        self.bytes_b_to_a = 0
        self.datagrams = 0
        self.confirmed = False
        """The target acknowledged the notice (or sent on the session)."""
        self.notices = 1
        self.actor: ActorRef | None = None

    def __repr__(self) -> str:
        return f"<RelayedSession {self.id} {self.a.short()} -> {self.b.short()}>"

    @property
    def bytes_transferred(self) -> int:
        return self.bytes_a_to_b + self.bytes_b_to_a


@attrs.frozen(eq=False)
class SessionOpened:
    """Effect: a session was opened; start its actor and tell ``on_session_start``."""

    session: RelayedSession


@attrs.frozen(eq=False)
class SessionEnded:
    """Effect: a session ended; stop its actor and tell ``on_session_end``."""

    session: RelayedSession
    reason: Reason


@attrs.frozen(eq=False)
class DirectoryAsked:
    """Effect: ``node`` asks the relay's directory ``query``; answer with
    :meth:`RelayCore.answer_directory`."""

    node: NodeId
    query: DirectoryQuery


Effect = SessionOpened | SessionEnded | DirectoryAsked


def _random_id(taken: Container[int]) -> int:
    for _ in range(_ID_ATTEMPTS):
        candidate = secrets.randbits(32)
        if candidate and candidate not in taken:
            return candidate
    raise RuntimeError("no free 32-bit id after 64 draws")  # unreachable below 2**31 ids in use


class RelayCore:
    """A relay's whole state and every decision about a datagram; see the module docstring.

    Disabled (``settings`` None) until :meth:`enable`: it then refuses registrations and
    sessions but still answers STUN.
    """

    def __init__(self, key: NodeKey, config: RelayConfig | None = None) -> None:
        self.key = key
        self.relay_id = key.node_id
        self.config = config = config or RelayConfig()
        self.settings: RelaySettings | None = None
        self.effects: list[Effect] = []
        """Effects not yet taken by the shell (:meth:`take_effects`)."""
        self.addresses: ObserverAddresses | None = None
        """The relay socket's address, once bound; STUN needs it."""
        self._cookies = CookieJar(config.challenge_lifetime)
        self._by_node: dict[NodeId, NodeRegistration] = {}
        self._by_id: dict[int, NodeRegistration] = {}
        self._sessions: dict[int, RelayedSession] = {}
        self._node_sessions: dict[NodeId, set[int]] = {}
        self._requests: dict[tuple[NodeId, int], int] = {}
        """(initiator, request id) -> session: a retransmitted request gets the same session."""
        self._sources = TokenBuckets(
            config.handshake_rate, config.handshake_burst, max(1, config.max_sources)
        )
        self._control = TokenBuckets(
            config.control_rate, config.control_burst, max(1, config.max_registrations)
        )
        self._directory = TokenBuckets(
            config.directory_rate, config.directory_burst, max(1, config.max_registrations)
        )
        capacity = config.max_registrations
        self._registration_shares = Shares(
            capacity, share_of(capacity, config.registration_source_share)
        )
        self._registrations_held: Holdings[NodeId] = Holdings()
        """Registered nodes per source (:attr:`NodeRegistration.source`)."""
        self._session_shares = Shares(0, 1)
        """Sized by :meth:`enable`."""
        self._sessions_held: Holdings[int] = Holdings()
        """Session ids per source of their initiator (:attr:`RelayedSession.source`)."""
        self._probes: list[Send] = []
        """The path challenge the datagram being handled draws, if any (see :meth:`_probe`)."""
        self.counters = Counters()

    # -- queries --------------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return self.settings is not None

    def registration(self, node_id: NodeId) -> NodeRegistration | None:
        return self._by_node.get(node_id)

    def registrations(self) -> list[NodeRegistration]:
        return list(self._by_node.values())

    def session(self, session_id: int) -> RelayedSession | None:
        return self._sessions.get(session_id)

    def sessions(self) -> list[RelayedSession]:
        return list(self._sessions.values())

    def load(self) -> int:
        """Sessions in use per thousand allowed; 1000 when full or disabled."""
        settings = self.settings
        if settings is None or settings.max_sessions == 0:
            return 1000
        return min(1000, len(self._sessions) * 1000 // settings.max_sessions)

    def statistics(self) -> RelayStatistics:
        counters = self.counters
        return RelayStatistics(
            enabled=self.enabled,
            registrations=len(self._by_node),
            sessions=len(self._sessions),
            registered=counters.registered,
            challenges=counters.challenges,
            sessions_opened=counters.sessions_opened,
            sessions_ended=counters.sessions_ended,
            datagrams=counters.datagrams,
            relayed=counters.relayed,
            bytes_relayed=counters.bytes_relayed,
            stun_answered=counters.stun_answered,
            roams=counters.roams,
            send_failures=counters.send_failures,
            drops=counters.drops(),
            refusals=counters.refusal_statistics(),
            fairness=self._fairness(),
            directory_queries=counters.directory_queries,
        )

    def _fairness(self) -> FairnessStatistics:
        registrations, sessions = self._registration_shares, self._session_shares
        settings, counters = self.settings, self.counters
        return FairnessStatistics(
            max_registrations=registrations.capacity,
            registration_share=registrations.share,
            max_sessions=sessions.capacity,
            session_share=sessions.share,
            max_sessions_per_node=0 if settings is None else settings.max_sessions_per_node,
            largest_registrations=self._registrations_held.most,
            largest_sessions=self._sessions_held.most,
            registrations_evicted=counters.registrations_evicted,
            sessions_evicted=counters.sessions_evicted,
            path_challenges=counters.path_challenges,
            path_validated=counters.path_validated,
        )

    def take_effects(self) -> list[Effect]:
        effects, self.effects = self.effects, []
        return effects

    # -- the datagram path ------------------------------------------------------------------------

    def receive(self, data: bytes, source: Address, now: float) -> list[Send]:
        """Everything to send in answer to ``data`` from ``source`` at ``now``."""
        self.counters.datagrams += 1
        if not data:
            self.counters.malformed += 1
            return _NOTHING
        first = data[0]
        if first == _DATA:
            sends = self._on_data(data, source, now)
        elif first == _CONTROL:
            sends = self._on_control(data, source, now)
        elif first < 4:
            return self._on_stun(data, source, now)
        elif first < _DATA:
            return self._on_handshake(data, source, now)
        else:
            self.counters.malformed += 1
            return _NOTHING
        if self._probes:  # the frame came from a new address: challenge it too
            self.counters.path_challenges += 1
            probes, self._probes = self._probes, []
            return probes + sends
        return sends

    def _authenticate(self, data: bytes, source: Address, now: float) -> NodeRegistration | None:
        """The registration an authentic, fresh sealed frame belongs to (liveness updated), or
        None with the drop counted. The newest frame from a new address queues that address's
        path challenge, if one is due, in ``_probes``."""
        if len(data) < SEALED_HEADER_SIZE + TAG_SIZE:
            self.counters.malformed += 1
            return None
        _, registration_id, counter = _SEALED_HEADER.unpack_from(data)
        registration = self._by_id.get(registration_id)
        if registration is None:
            self.counters.unauthenticated += 1
            return None
        verdict = registration.link.verify(data, counter)
        if verdict is _NEWEST:
            if source != registration.address:
                self._probe(registration, source, now)
        elif verdict is not _ACCEPTED:
            if verdict is _REPLAYED:
                self.counters.replayed += 1
            else:
                self.counters.unauthenticated += 1
            return None
        registration.last_heard = now
        if registration.expires_at <= now:
            self.counters.expired += 1
            return None
        return registration

    def _on_data(self, data: bytes, source: Address, now: float) -> list[Send]:
        """The forwarding path, which every relayed datagram takes."""
        counters = self.counters
        if len(data) < _DATA_MINIMUM:
            counters.malformed += 1
            return _NOTHING
        registration = self._authenticate(data, source, now)
        if registration is None:
            return _NOTHING
        session_id = _SESSION.unpack_from(data, SEALED_HEADER_SIZE)[0]
        session = self._sessions.get(session_id)
        sender = registration.node_id  # ids in registrations and sessions are one object per node
        if session is None:
            return self._unknown_session(registration, session_id, now)
        if sender is session.a:
            from_a = True
            peer = self._by_node.get(session.b)
        elif sender is session.b:
            from_a = False
            peer = self._by_node.get(session.a)
        else:
            return self._unknown_session(registration, session_id, now)
        if session.deadline <= now:
            counters.expired += 1
            return _NOTHING
        if peer is None:
            counters.expired += 1
            return _NOTHING
        size = len(data) - DATA_OVERHEAD
        if not session.bucket.take(size, now):
            counters.over_bandwidth += 1
            return _NOTHING
        session.last_active = now
        session.datagrams += 1
        if from_a:
            session.bytes_a_to_b += size
        else:
            session.bytes_b_to_a += size
            session.confirmed = True
        counters.relayed += 1
        counters.bytes_relayed += size
        out = peer.link.seal_data(session_id, data[_PAYLOAD_START:-TAG_SIZE])
        return [(out, peer.address)]

    def _unknown_session(
        self, registration: NodeRegistration, session_id: int, now: float
    ) -> list[Send]:
        """DATA on a session that is not the sender's: dropped, and the sender told (within
        its control-frame budget) so it stops."""
        self.counters.unknown_session += 1
        if self._control.allow(registration.link.registration, now):
            close = Close(session_id, Reason.UNKNOWN_SESSION)
            return [(registration.link.seal(close), registration.address)]
        return _NOTHING

    def _on_control(self, data: bytes, source: Address, now: float) -> list[Send]:
        registration = self._authenticate(data, source, now)
        if registration is None:
            return _NOTHING
        if not self._control.allow(registration.link.registration, now):
            self.counters.rate_limited += 1
            return _NOTHING
        try:
            frame = decode_body(FrameType.CONTROL, data[SEALED_HEADER_SIZE:-TAG_SIZE])
        except FrameError:
            self.counters.malformed += 1
            return _NOTHING
        if isinstance(frame, PathResponse):
            self._probes.clear()  # it answers one: no need to challenge its address again
            self._on_path_response(registration, frame, source, now)
            return _NOTHING
        if isinstance(frame, Keepalive):
            pong = Pong(frame.echo, self.load(), registration.address)
            return [(registration.link.seal(pong), registration.address)]
        if isinstance(frame, RelayRequest):
            return self._on_request(registration, frame, now)
        if isinstance(frame, DirectoryQuery):
            if not self._directory.allow(registration.link.registration, now):
                self.counters.rate_limited += 1
                busy = DirectoryAnswer(frame.request, DirectoryStatus.BUSY, b"")
                return [(registration.link.seal(busy), registration.address)]
            self.counters.directory_queries += 1
            self.effects.append(DirectoryAsked(registration.node_id, frame))
            return _NOTHING
        if isinstance(frame, SessionAck):
            session = self._sessions.get(frame.session)
            if session is not None and session.b == registration.node_id:
                session.confirmed = True
            return _NOTHING
        if isinstance(frame, Close):
            if frame.session == 0:
                return self._deregister(registration.node_id, Reason.NORMAL, notify=False)
            session = self._sessions.get(frame.session)
            node = registration.node_id
            if session is None or (node != session.a and node != session.b):
                return _NOTHING
            return self.end_session(frame.session, Reason.NORMAL, skip=node)
        self.counters.malformed += 1  # frames only a relay sends
        return _NOTHING

    # -- roaming: a new source address is adopted once it answers a path challenge -----------------

    def _probe(self, registration: NodeRegistration, source: Address, now: float) -> None:
        """Challenge ``source`` (a new address the node's newest frame came from), unless a
        challenge went there within ``path_challenge_interval``."""
        config = self.config
        trials = registration.probes
        probe = trials.get(source)
        if probe is not None and now - probe.issued_at >= config.path_challenge_lifetime:
            del trials[source]
            probe = None
        if probe is None:
            lifetime = config.path_challenge_lifetime
            for stale in [a for a, p in trials.items() if now - p.issued_at >= lifetime]:
                del trials[stale]
            if len(trials) >= config.max_path_challenges:
                if not trials:
                    return  # max_path_challenges 0: never roam
                del trials[min(trials, key=lambda address: trials[address].sent_at)]
            probe = trials[source] = PathProbe(secrets.token_bytes(_PATH_NONCE_SIZE), now)
        elif now - probe.sent_at < config.path_challenge_interval:
            return
        probe.sent_at = now
        self._probes.append((registration.link.seal(PathChallenge(probe.nonce)), source))

    def _on_path_response(
        self, registration: NodeRegistration, response: PathResponse, source: Address, now: float
    ) -> None:
        """Adopt ``source`` if this answers the live challenge sent there; the nonce is spent."""
        probe = registration.probes.get(source)
        if probe is None or probe.nonce != response.nonce:
            self.counters.expired += 1  # no challenge of this address on trial: spent or never sent
            return
        del registration.probes[source]
        if now - probe.issued_at >= self.config.path_challenge_lifetime:
            self.counters.expired += 1
            return
        registration.probes.clear()  # other trials lost to the one that answered
        registration.address = source
        self.counters.roams += 1
        self.counters.path_validated += 1

    def _seal_to(self, node_id: NodeId, frame: SessionFrame) -> list[Send]:
        registration = self._by_node.get(node_id)
        if registration is None:
            return []
        return [(registration.link.seal(frame), registration.address)]

    def _refuse(self, reason: Reason) -> None:
        refusals = self.counters.refusals
        refusals[reason.label] = refusals.get(reason.label, 0) + 1

    def _on_request(
        self, registration: NodeRegistration, request: RelayRequest, now: float
    ) -> list[Send]:
        node = registration.node_id
        known = self._requests.get((node, request.request))
        if known is not None:  # a retransmitted request: the same answer again
            accepted = RelayAccepted(request.request, known, self._sessions[known].b)
            return [(registration.link.seal(accepted), registration.address)]
        mine = self._node_sessions.get(node, ())
        target = request.target
        target_registration = self._by_node.get(target)
        shares, held = self._session_shares, self._sessions_held
        decision = shares.decide(held, registration.source)
        reason = admit(
            self.settings,
            same_node=target == node,
            target_registered=target_registration is not None
            and target_registration.expires_at > now,
            sessions=len(self._sessions) - isinstance(decision, Evict),
            initiator_sessions=len(mine),
            target_sessions=len(self._node_sessions.get(target, ())),
        )
        over_share = held.count(registration.source) >= shares.share
        if reason is Reason.MAX_SESSIONS_REACHED and isinstance(decision, Refuse) and over_share:
            reason = Reason.SOURCE_SHARE
        if reason is not None:
            self._refuse(reason)
            refused = RequestRefused(request.request, reason)
            return [(registration.link.seal(refused), registration.address)]
        assert self.settings is not None and target_registration is not None
        sends: list[Send] = []
        if isinstance(decision, Evict):
            sends = self._evict_session(decision.source)
        target = target_registration.node_id  # the one id object of that node (see _on_data)
        session = RelayedSession(
            _random_id(self._sessions),
            node,
            target,
            request.request,
            self.settings,
            now,
            registration.source,
        )
        self._sessions[session.id] = session
        held.add(session.source, session.id)
        self._requests[node, request.request] = session.id
        self._node_sessions.setdefault(node, set()).add(session.id)
        self._node_sessions.setdefault(target, set()).add(session.id)
        self.counters.sessions_opened += 1
        self.effects.append(SessionOpened(session))
        accepted = RelayAccepted(request.request, session.id, target)
        notice = RelayAccepted(0, session.id, node)
        sends.append((registration.link.seal(accepted), registration.address))
        sends.append((target_registration.link.seal(notice), target_registration.address))
        return sends

    def _evict_session(self, source: str) -> list[Send]:
        """End a session ``source`` started (it holds over its share), telling both members
        ``source_share``: the least recently active of its :data:`_EVICTION_SAMPLE` oldest."""
        sessions = self._sessions
        candidates = self._sessions_held.keys(source, _EVICTION_SAMPLE)
        victim = min(candidates, key=lambda i: sessions[i].last_active)
        self.counters.sessions_evicted += 1
        return self.end_session(victim, Reason.SOURCE_SHARE)

    def _on_stun(self, data: bytes, source: Address, now: float) -> list[Send]:
        addresses = self.addresses
        if addresses is None:
            self.counters.malformed += 1
            return _NOTHING
        if not self._sources.allow(source_prefix(source[0]), now):
            self.counters.rate_limited += 1
            return _NOTHING
        decision = answer(data, source, addresses.primary, addresses)
        if decision.response is None or decision.destination is None:
            if decision.outcome is Outcome.MALFORMED:
                self.counters.malformed += 1
            return _NOTHING
        self.counters.stun_answered += 1
        return [(decision.response, decision.destination)]

    # -- registration ---------------------------------------------------------------------------

    def _on_handshake(self, data: bytes, source: Address, now: float) -> list[Send]:
        counters = self.counters
        if not self._sources.allow(source_prefix(source[0]), now):
            counters.rate_limited += 1
            return _NOTHING
        try:
            frame = decode(data)
        except FrameError:
            counters.malformed += 1
            return _NOTHING
        if isinstance(frame, Hello):
            if self.settings is None:
                self._refuse(Reason.RELAY_DISABLED)
                return [(encode(Refused(frame.client_nonce, Reason.RELAY_DISABLED)), source)]
            counters.challenges += 1
            cookie = self._cookies.issue(frame.node_id, source, now)
            challenge = Challenge(frame.client_nonce, self.relay_id, cookie, source)
            return [(encode(challenge), source)]
        if isinstance(frame, Register):
            return self._on_register(frame, source, now)
        counters.malformed += 1  # CHALLENGE, REGISTERED, REFUSED: frames only a relay sends
        return _NOTHING

    def _on_register(self, register: Register, source: Address, now: float) -> list[Send]:
        counters = self.counters
        verdict = self._cookies.check(register.cookie, register.node_id, source, now)
        if verdict is CookieVerdict.FORGED or register.observed != source:
            counters.unauthenticated += 1
            return _NOTHING
        existing = self._by_node.get(register.node_id)
        if existing is not None and existing.cookie == register.cookie:
            return [(existing.answer, source)]  # our REGISTERED was lost: the same answer again
        if verdict is CookieVerdict.STALE:
            self._refuse(Reason.STALE_CHALLENGE)
            return [(encode(Refused(register.client_nonce, Reason.STALE_CHALLENGE)), source)]
        if existing is not None and CookieJar.issued_at(register.cookie) < CookieJar.issued_at(
            existing.cookie
        ):
            counters.replayed += 1  # older than the registration it would replace
            return _NOTHING
        shares, held = self._registration_shares, self._registrations_held
        origin = source_prefix(source[0])
        reason = None
        decision = None
        if self.settings is None:
            reason = Reason.RELAY_DISABLED
        elif existing is None or existing.source != origin:
            decision = shares.decide(held, origin, renewing=existing is not None)
            if isinstance(decision, Refuse):
                full = held.count(origin) >= shares.share
                reason = Reason.SOURCE_SHARE if full else Reason.MAX_REGISTRATIONS
        if reason is not None:
            self._refuse(reason)
            return [(encode(Refused(register.client_nonce, reason)), source)]
        registration_id = _random_id(self._by_id)
        ttl = self.config.registration_ttl
        accepted = accept_registration(self.key, register, registration_id, int(ttl))
        if accepted is None:
            counters.unauthenticated += 1
            return _NOTHING
        sends: list[Send] = []
        if isinstance(decision, Evict):  # only now: a forged REGISTER must not evict anyone
            sends = self._evict_registration(decision.source)
        registered, link = accepted
        reply = encode(registered)
        node_id = register.node_id
        if existing is not None:
            del self._by_id[existing.link.registration]
            node_id = existing.node_id  # keep one id object per node: sessions compare by identity
            held.discard(existing.source, node_id)  # held by one source: the one it came from
        fresh = NodeRegistration(node_id, link, source, register.cookie, reply, now, ttl)
        self._by_node[register.node_id] = fresh
        self._by_id[registration_id] = fresh
        held.add(origin, node_id)
        counters.registered += 1
        sends.append((reply, source))
        return sends

    def _evict_registration(self, source: str) -> list[Send]:
        """End a registration of ``source`` (which holds over its share), telling it
        ``source_share`` so it registers elsewhere: the least recently heard of its
        :data:`_EVICTION_SAMPLE` oldest."""
        by_node = self._by_node
        candidates = self._registrations_held.keys(source, _EVICTION_SAMPLE)
        victim = min(candidates, key=lambda node: by_node[node].last_heard)
        self.counters.registrations_evicted += 1
        return self._deregister(victim, Reason.SOURCE_SHARE, notify=True)

    def _deregister(self, node_id: NodeId, reason: Reason, *, notify: bool) -> list[Send]:
        """End a registration and every session of its node (the peers hear ``peer_gone``)."""
        registration = self._by_node.get(node_id)
        if registration is None:
            return []
        sends: list[Send] = []
        for session_id in sorted(self._node_sessions.get(node_id, ())):
            sends += self.end_session(session_id, Reason.PEER_GONE, skip=node_id)
        if notify:
            sends.append((registration.link.seal(Close(0, reason)), registration.address))
        del self._by_node[node_id]
        del self._by_id[registration.link.registration]
        self._node_sessions.pop(node_id, None)
        self._registrations_held.discard(registration.source, node_id)
        return sends

    # -- what timers and the operator do ----------------------------------------------------------

    def end_session(
        self, session_id: int, reason: Reason, *, skip: NodeId | None = None
    ) -> list[Send]:
        """End a session (no-op if it is gone): CLOSE to its members but ``skip``."""
        session = self._sessions.pop(session_id, None)
        if session is None:
            return []
        del self._requests[session.a, session.request]
        self._sessions_held.discard(session.source, session_id)
        sends: list[Send] = []
        for node in (session.a, session.b):
            members = self._node_sessions.get(node)
            if members is not None:
                members.discard(session_id)
            if node != skip:
                sends += self._seal_to(node, Close(session_id, reason))
        self.counters.sessions_ended += 1
        self.effects.append(SessionEnded(session, reason))
        return sends

    def answer_directory(self, node: NodeId, answer: DirectoryAnswer) -> list[Send]:
        """Send ``answer`` to ``node``'s registration (nothing if it is gone)."""
        return self._seal_to(node, answer)

    def renotice(self, session_id: int) -> list[Send]:
        """Tell a session's target of it again, unless it acknowledged."""
        session = self._sessions.get(session_id)
        if session is None or session.confirmed:
            return []
        session.notices += 1
        return self._seal_to(session.b, RelayAccepted(0, session_id, session.a))

    def sweep(self, now: float) -> list[Send]:
        """End registrations past their TTL or not heard from within the liveness timeout."""
        liveness = self.config.liveness_timeout
        sends: list[Send] = []
        for registration in list(self._by_node.values()):
            if registration.expires_at <= now or now - registration.last_heard >= liveness:
                sends += self._deregister(
                    registration.node_id, Reason.REGISTRATION_EXPIRED, notify=True
                )
        return sends

    def enable(self, settings: RelaySettings) -> None:
        self.settings = settings
        self._session_shares = Shares(
            settings.max_sessions, share_of(settings.max_sessions, settings.session_source_share)
        )

    def disable(self) -> list[Send]:
        """Stop relaying: end every session and registration (``relay_disabled``)."""
        self.settings = None
        return self.end_all(Reason.RELAY_DISABLED)

    def end_all(self, reason: Reason) -> list[Send]:
        """End every session and registration, telling each node ``reason``."""
        sends: list[Send] = []
        for session_id in list(self._sessions):
            sends += self.end_session(session_id, reason)
        for node_id in list(self._by_node):
            sends += self._deregister(node_id, reason, notify=True)
        return sends

    def count_send_failure(self) -> None:
        self.counters.send_failures += 1
