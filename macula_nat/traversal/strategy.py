"""The traversal strategy: a pure decision table over two NAT profiles.

ARCHITECTURE.md section 7 and issue 5: "both ``pd``/``rd`` -> relay; otherwise punch (with
prediction or birthday where needed); a side with EIF or no NAT -> direct". A side whose router
mapped its port on request (issue 13: ``NatProfile.mapped``) counts as EIF: it is dialled there.
The table reasons in RFC 4787 terms about one datagram from X to Y: it arrives when X aims at
Y's mapping toward X and Y's filter admits X's mapping; Y then answers on that flow and X's
filter admits the answer.

Each side is first reduced to how the peer can know its mapping (:class:`PortKind`):

- ``fixed``: one public address for every peer (no NAT, EIM, or port preservation);
- ``predicted``: non-EIM with ``pc`` allocation and a measured delta (try the next ports);
- ``random``: non-EIM with ``rd`` allocation (or ``pc`` without a delta): only birthday probing
  reaches it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

import attrs

from macula_nat.behavior import FilteringBehavior, MappingBehavior, PortAllocation
from macula_nat.nat.profile import NatProfile
from macula_nat.net.address import ip_version


class Method(enum.StrEnum):
    """How the two nodes get a path (the connection's ``connection_method`` for the first three)."""

    DIRECT = "direct"
    PUNCH = "punch"
    RELAY = "relay"
    IMPOSSIBLE = "impossible"
    """No direct path and relaying not allowed: the connector raises ``SymmetricNat``."""


class Side(enum.StrEnum):
    """Which end of the pair a role falls to."""

    LOCAL = "local"
    REMOTE = "remote"

    @property
    def other(self) -> Side:
        return Side.REMOTE if self is Side.LOCAL else Side.LOCAL


class PortKind(enum.StrEnum):
    """How predictable a side's mapping toward a new peer is."""

    FIXED = "fixed"
    PREDICTED = "predicted"
    RANDOM = "random"


def port_kind(profile: NatProfile) -> PortKind:
    """Reduce a profile to how its peer can learn its mapping (RFC 4787 sections 4.1, 4.2).

    Port preservation beside endpoint-dependent mapping is not a fixed port: a NAT that keeps
    the port toward every destination (Linux does, while the 5-tuple is unique) is measured as
    endpoint-independent, so one measured as dependent kept it for its first destination only,
    and its mapping toward a new peer falls back to a port nobody can name."""
    if not profile.nat_present or profile.mapping == MappingBehavior.ENDPOINT_INDEPENDENT:
        return PortKind.FIXED
    if profile.allocation == PortAllocation.CONTIGUITY and profile.port_delta:
        return PortKind.PREDICTED
    return PortKind.RANDOM


def _swap(sides: frozenset[Side]) -> frozenset[Side]:
    return frozenset(s.other for s in sides)


@attrs.frozen
class Plan:
    """What the coordinator does for one pair; roles are named from the local node's view.

    ``initiator``: for ``direct`` the side that dials; for ``punch`` the side that must open its
    mappings first (the birthday hard side, or the one predicted side); None means either side
    (direct) or a synchronised simultaneous send (punch, the requester waiting RTT/2).
    ``adopts``: sides that must answer the address the peer's packets really come from (a
    peer-reflexive address), because the peer's mapping toward them is not the published one.
    ``predict``: sides whose next ports the peer must try at the measured delta.
    ``birthday_hard``: the side that opens many sockets while the other probes random ports.
    ``lan_first``: both sit behind the same public IP: try LAN candidates before anything else.
    """

    method: Method
    reason: str
    initiator: Side | None = None
    adopts: frozenset[Side] = frozenset()
    predict: frozenset[Side] = frozenset()
    birthday_hard: Side | None = None
    lan_first: bool = False
    version: int | None = None
    """The IP version of the path planned (:func:`choose_path`); None: the profiles' own."""

    @property
    def feasible(self) -> bool:
        """False when the connector must give up (``SymmetricNat``)."""
        return self.method is not Method.IMPOSSIBLE

    @property
    def birthday(self) -> bool:
        return self.birthday_hard is not None

    def swapped(self) -> Plan:
        """The same plan seen from the other node (local and remote exchanged)."""
        return attrs.evolve(
            self,
            initiator=self.initiator.other if self.initiator else None,
            adopts=_swap(self.adopts),
            predict=_swap(self.predict),
            birthday_hard=self.birthday_hard.other if self.birthday_hard else None,
        )


def _accepts_dials(target: NatProfile) -> bool:
    """Whether any peer reaches ``target``'s published address without any coordination.

    The target's EIF filter admits anything; its answer belongs to the flow the dial opened, so
    it leaves through the same mapping (connection tracking, as every NAT in the lab does),
    whatever the target's mapping behaviour, and passes the dialer's filter. The dialer's
    own mapping toward the target may be new: the target adopts it (:func:`_adopters`).
    A port the target's router mapped on request (``mapped``: NAT-PMP, PCP, UPnP) is such a
    filter for that one port, whatever the NAT does otherwise: the dial goes there.
    """
    return target.filtering == FilteringBehavior.ENDPOINT_INDEPENDENT or target.mapped is not None


def _adopters(local: NatProfile, remote: NatProfile) -> frozenset[Side]:
    """A side adopts when its peer's mapping toward it differs from the published address."""
    sides: set[Side] = set()
    if port_kind(remote) is not PortKind.FIXED:
        sides.add(Side.LOCAL)
    if port_kind(local) is not PortKind.FIXED:
        sides.add(Side.REMOTE)
    return frozenset(sides)


def _direct(local: NatProfile, remote: NatProfile) -> Plan | None:
    local_dials = _accepts_dials(remote)
    remote_dials = _accepts_dials(local)
    if not (local_dials or remote_dials):
        return None
    if local_dials and remote_dials:
        initiator, reason = None, "both sides accept unsolicited datagrams (EIF or no NAT)"
    elif local_dials:
        initiator, reason = Side.LOCAL, "the dialled side accepts unsolicited datagrams"
    else:
        initiator, reason = Side.REMOTE, "the dialled side accepts unsolicited datagrams"
    dialled = [p for p, dials in ((remote, local_dials), (local, remote_dials)) if dials]
    if all(p.filtering != FilteringBehavior.ENDPOINT_INDEPENDENT for p in dialled):
        reason += " at a port its router mapped on request"
    return Plan(Method.DIRECT, reason, initiator=initiator, adopts=_adopters(local, remote))


def _punch_one_sided(easy: NatProfile, hard_kind: PortKind, hard: Side) -> Plan:
    """``easy`` has a fixed mapping, the ``hard`` side does not (section 7's cone vs symmetric)."""
    adopts = frozenset({hard.other})
    if easy.filtering != FilteringBehavior.ADDRESS_AND_PORT_DEPENDENT:
        return Plan(
            Method.PUNCH,
            "cone side filters by address only: it adopts the symmetric side's source",
            adopts=adopts,
        )
    if hard_kind is PortKind.PREDICTED:
        return Plan(
            Method.PUNCH,
            "port-restricted side tries the sequential side's next ports",
            initiator=hard,
            adopts=adopts,
            predict=frozenset({hard}),
        )
    return Plan(
        Method.PUNCH,
        "birthday: the random-port side opens many sockets, the other probes random ports",
        initiator=hard,
        adopts=adopts,
        birthday_hard=hard,
    )


def _punch(local: NatProfile, remote: NatProfile) -> Plan | None:
    kinds = (port_kind(local), port_kind(remote))
    adopts = _adopters(local, remote)
    match kinds:
        case (PortKind.FIXED, PortKind.FIXED):
            return Plan(Method.PUNCH, "both mappings are known: simultaneous send")
        case (PortKind.FIXED, hard_kind):
            return _punch_one_sided(local, hard_kind, Side.REMOTE)
        case (hard_kind, PortKind.FIXED):
            return _punch_one_sided(remote, hard_kind, Side.LOCAL)
        case (PortKind.PREDICTED, PortKind.PREDICTED):
            return Plan(
                Method.PUNCH,
                "both sequential: each tries the other's next ports",
                adopts=adopts,
                predict=frozenset(Side),
            )
    # A random side against a random or sequential one: the sequential side's random probes
    # each take a new port of its own, so they cannot meet sockets aimed at its predicted
    # ports (about 3% per attempt in the lab, none of 3 attempts in any run): relay.
    return None


def _same_nat(local: NatProfile, remote: NatProfile) -> bool:
    return local.nat_present and remote.nat_present and local.public_ip == remote.public_ip


def choose(local: NatProfile, remote: NatProfile, *, allow_relay: bool = True) -> Plan:
    """Pick the traversal plan for ``local`` connecting to ``remote``.

    In order: behind the same public IP, LAN candidates come first and a NAT known not to hairpin
    leaves only the relay; then a direct dial to an EIF or un-NATted side; then a punch (with
    prediction or birthday probing where a side is not fixed); a random side facing a random or
    sequential symmetric side needs the relay, and without it the plan is
    :attr:`Method.IMPOSSIBLE`. A side whose UDP is blocked always needs the relay.
    """
    if local.udp_blocked or remote.udp_blocked:
        reason = "UDP is blocked on one side: no datagram can punch, "
        return (
            Plan(Method.RELAY, reason + "relay (over TCP/TLS on the blocked side)")
            if allow_relay
            else Plan(Method.IMPOSSIBLE, reason + "and relaying is not allowed")
        )
    lan_first = _same_nat(local, remote)
    plan: Plan | None
    if lan_first and False in (local.hairpinning, remote.hairpinning):
        plan = None
        fallback = "same NAT without hairpinning: LAN candidates, else "
    else:
        plan = _direct(local, remote) or _punch(local, remote)
        fallback = "a random-port side and a port-dependent peer: no mapping can be reached, "
    if plan is None:
        plan = (
            Plan(Method.RELAY, fallback + "relay")
            if allow_relay
            else Plan(Method.IMPOSSIBLE, fallback + "and relaying is not allowed")
        )
    if lan_first:
        reason = "same public IP, LAN first; " + plan.reason
        plan = attrs.evolve(plan, lan_first=True, reason=reason)
    return plan


_RANK = {Method.DIRECT: 0, Method.PUNCH: 1, Method.RELAY: 3, Method.IMPOSSIBLE: 4}


def _rank(plan: Plan) -> tuple[int, int]:
    """Better plans first: direct, a punch, a birthday punch, the relay, nothing; then IPv6
    (Happy Eyeballs prefers it when both work)."""
    method = _RANK[plan.method] + (1 if plan.birthday else 0)
    return method, 0 if plan.version == 6 else 1


def choose_path(
    local: Iterable[NatProfile],
    remote: Iterable[NatProfile],
    *,
    versions: frozenset[int] = frozenset((4, 6)),
    allow_relay: bool = True,
) -> Plan:
    """The plan for the best path between two nodes that may each have a profile per IP
    version (a dual-stack node: its IPv4 NAT and its IPv6 firewall, each classified on its
    own). Each version both sides have a profile of (and ``versions``, this node's socket,
    sends to) is planned with that version's profiles, and the best plan wins (direct, then a
    punch, a birthday punch, the relay; IPv6 on a tie); its ``version`` says which. Without a
    shared version, :func:`choose` on the first profile of each (a relayed path, as before).
    """
    locals_, remotes = list(local), list(remote)
    if not locals_ or not remotes:
        raise ValueError("choose_path needs at least one profile on each side")
    plans = [
        attrs.evolve(choose(mine, theirs, allow_relay=allow_relay), version=version)
        for mine in locals_
        for theirs in remotes
        if (version := ip_version(mine.public_ip)) == ip_version(theirs.public_ip)
        and version in versions
    ]
    if not plans:
        return choose(locals_[0], remotes[0], allow_relay=allow_relay)
    return min(plans, key=_rank)
