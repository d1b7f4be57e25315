"""PortMapper: ask the router for an inbound UDP mapping of the node's socket, and keep it.

Tailscale's portmapper is the model: PCP (RFC 6887), NAT-PMP (RFC 6886) and UPnP IGD are
probed at once at the gateway (the default route's, or ``PortMapConfig.gateway``) and the first
that answers maps the node's port. The mapping is renewed at half its lifetime, checked in
between (an epoch that went backwards means the router forgot it: map again), and deleted when
the node stops. Its external address is trusted only when STUN saw the same public IP: a router
behind another NAT, or an IGD that lies, would otherwise send peers to an address that leads
nowhere. Malformed answers are logged and ignored; without a mapping the node simply punches.

The :class:`PortMapper` handle keeps the mapping, the PCP nonce, the gateway's epochs and the
counters, so a restarted :class:`PortMapperServer` renews the same mapping.
"""

from __future__ import annotations

import abc
import enum
import ipaddress
import logging
import os
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Final, TypeVar

import attrs
import trio
from trio_util import AsyncValue

from macula_nat.actors import Actor, Exit, Served
from macula_nat.nat.detector import NatDetector
from macula_nat.net.address import Address, any_address, ip_version
from macula_nat.net.endpoint import UdpEndpoint, UdpStack

from . import http, natpmp, pcp, upnp
from .epoch import EpochSample, epoch_reset
from .errors import PortMapDecodeError
from .gateway import default_gateway, facing_address

logger = logging.getLogger(__name__)

T = TypeVar("T")

_UPNP_PORT_TRIES: Final = 4
"""AddPortMapping attempts on other external ports when the one asked for is taken (718)."""


class Protocol(enum.StrEnum):
    PCP = "pcp"
    NATPMP = "natpmp"
    UPNP = "upnp"


def _protocols(value: Any) -> tuple[Protocol, ...]:
    protocols = tuple(Protocol(p) for p in value)
    if not protocols:
        raise ValueError("port mapping needs at least one protocol")
    return protocols


def _positive(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be positive, not {value!r}")


def _optional_ip(value: str | None) -> str | None:
    return None if value is None else str(ipaddress.ip_address(value))


@attrs.frozen
class PortMapConfig:
    """How the node asks its router for a mapping. ``gateway``: the router's IP (None: the
    default route's gateway); ``local_ip``: this host's address facing it (None: the stack's
    address closest to the gateway). The ports are the protocols' own; tests move them."""

    gateway: str | None = attrs.field(default=None, converter=_optional_ip)
    local_ip: str | None = attrs.field(default=None, converter=_optional_ip)
    protocols: tuple[Protocol, ...] = attrs.field(
        default=(Protocol.PCP, Protocol.NATPMP, Protocol.UPNP), converter=_protocols
    )
    lifetime: int = attrs.field(default=7200, validator=_positive)
    """Seconds asked for; the router may grant less. Renewed at half what it granted."""
    request_timeout: float = attrs.field(default=2.0, validator=_positive)
    """How long one NAT-PMP or PCP request waits, retransmitting (RFC 6886: 250 ms, doubling)."""
    first_retransmit: float = attrs.field(default=0.25, validator=_positive)
    http_timeout: float = attrs.field(default=3.0, validator=_positive)
    """Bound on each UPnP step: the SSDP answer, the description, one SOAP action."""
    retry_interval: float = attrs.field(default=60.0, validator=_positive)
    """Wait before probing again when nothing answered or the mapping was refused."""
    check_interval: float = attrs.field(default=120.0, validator=_positive)
    """Between renewals: how often to ask the gateway whether it still has the mapping."""
    server_port: int = natpmp.PORT
    ssdp_port: int = upnp.SSDP_PORT
    description: str = "macula-nat"


@attrs.frozen
class PortMapping:
    """A mapping the router granted: ``internal`` (this host's address, the node's port) is
    reachable at ``external``. ``trusted``: STUN saw the same public IP (None: not compared
    yet); only a trusted mapping is published. Times are Trio's clock."""

    protocol: Protocol
    internal: Address
    external: Address
    lifetime: int
    renew_at: float
    expires_at: float
    trusted: bool | None = None


@attrs.frozen
class PortMapperStatistics:
    gateway: str | None
    protocol: Protocol | None
    """The protocol the current mapping was made with."""
    mapping: PortMapping | None
    probes: int
    """Probe rounds (all protocols at once)."""
    granted: int
    """Mappings granted, renewals included."""
    renewals: int
    refused: int
    """Requests the gateway refused or did not answer."""
    malformed: int
    """Answers that did not decode (each logged)."""
    forgotten: int
    """Times the gateway lost the mapping (epoch reset): mapped again."""
    distrusted: int
    """Mappings whose external IP STUN contradicted: not published."""
    deleted: int


@attrs.frozen
class _Granted:
    external: Address
    lifetime: int


class _NotSpoken(Exception):
    """The gateway answered in a way that means it does not speak this protocol."""


class PortMapper(Served):
    """The node's port mapping: ``mapping`` (an ``AsyncValue``) holds the current one.

    ``internal_port`` is the node's socket's port; ``detector`` (optional) gives the STUN
    public IP to check the mapping against and publishes the trusted mapping in the profile
    (``NatProfile.mapped``).
    """

    default_id = "nat_port_mapper"

    def __init__(
        self,
        stack: UdpStack,
        internal_port: int,
        config: PortMapConfig | None = None,
        *,
        detector: NatDetector | None = None,
    ) -> None:
        super().__init__()
        self.stack = stack
        self.internal_port = internal_port
        self.config = config or PortMapConfig()
        self.detector = detector
        self.mapping: AsyncValue[PortMapping | None] = AsyncValue(None)
        self.gateway: str | None = self.config.gateway
        self.local_ip: str | None = self.config.local_ip
        self.nonce = os.urandom(pcp.NONCE_SIZE)
        """The PCP MAP nonce: the same for every renewal, across restarts."""
        self._epochs: dict[Protocol, EpochSample] = {}
        self._natpmp_ip: str | None = None
        self._igd: upnp.IgdService | None = None
        self._upnp_ip: str | None = None
        self._distrust_logged: tuple[str, str] | None = None
        self._counts = dict.fromkeys(
            ("probes", "granted", "renewals", "refused", "malformed", "forgotten",
             "distrusted", "deleted"),
            0,
        )  # fmt: skip

    def __repr__(self) -> str:
        mapping = self.mapping.value
        where = f"{mapping.protocol} {mapping.external}" if mapping else "unmapped"
        return f"<PortMapper :{self.internal_port} {where}>"

    def statistics(self) -> PortMapperStatistics:
        mapping = self.mapping.value
        return PortMapperStatistics(
            gateway=self.gateway,
            protocol=None if mapping is None else mapping.protocol,
            mapping=mapping,
            **self._counts,
        )

    # -- the gateway's epoch and the STUN check --------------------------------------------------

    def _epoch(self, protocol: Protocol, server: int) -> bool:
        """Record an answer's epoch; True when it shows the gateway lost its mappings."""
        sample = EpochSample(server, trio.current_time())
        reset = epoch_reset(self._epochs.get(protocol), sample)
        self._epochs[protocol] = sample
        if reset:
            self._counts["forgotten"] += 1
            logger.warning(
                "%r: the gateway %s lost its %s mappings (epoch now %d s): mapping again",
                self, self.gateway, protocol, server,
            )  # fmt: skip
        return reset

    def _set(self, mapping: PortMapping | None) -> None:
        """Make ``mapping`` current, judge it against STUN's public IP and publish it if trusted."""
        if mapping is not None:
            mapping = attrs.evolve(mapping, trusted=self._trust(mapping))
        self.mapping.value = mapping
        if self.detector is not None:
            trusted = mapping is not None and mapping.trusted
            self.detector.set_mapped(mapping.external if trusted and mapping else None)

    def _trust(self, mapping: PortMapping) -> bool | None:
        profile = None if self.detector is None else self.detector.profile.value
        if profile is None:
            return None
        if profile.public_ip == mapping.external[0]:
            self._distrust_logged = None
            return True
        pair = (mapping.external[0], profile.public_ip)
        if self._distrust_logged != pair:
            self._distrust_logged = pair
            self._counts["distrusted"] += 1
            logger.warning(
                "%r: the gateway %s (%s) says the external address is %s, but STUN sees %s: "
                "not publishing the mapping (a NAT beyond the router, or a gateway that lies); "
                "peers punch as before",
                self, self.gateway, mapping.protocol, mapping.external[0], profile.public_ip,
            )  # fmt: skip
        return False

    def _recheck(self) -> None:
        """The STUN profile changed: judge the current mapping again."""
        mapping = self.mapping.value
        if mapping is not None and self._trust(mapping) != mapping.trusted:
            self._set(mapping)

    # -- one UDP request ---------------------------------------------------------------------

    async def _exchange(
        self,
        endpoint: UdpEndpoint,
        payload: bytes,
        decode: Callable[[bytes], T],
        matches: Callable[[T], bool],
        what: str,
    ) -> T | None:
        """Send ``payload`` to the gateway's port, retransmitting, until an answer ``matches``
        or the request times out (None). Malformed answers are logged and skipped."""
        config = self.config
        assert self.gateway is not None
        server = (self.gateway, config.server_port)
        found: list[T] = []

        async def retransmit(scope: trio.CancelScope) -> None:
            interval = config.first_retransmit
            while True:
                try:
                    await endpoint.send_to(payload, server)
                except OSError as exc:  # no route to the gateway, the address went away, ...
                    logger.info("%r: cannot send the %s request to %s: %s", self, what,
                                server, exc)  # fmt: skip
                    scope.cancel()
                    return
                await trio.sleep(interval)
                interval *= 2

        with trio.move_on_after(config.request_timeout):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(retransmit, nursery.cancel_scope)
                while True:
                    data, source = await endpoint.receive_from()
                    if source != server:
                        logger.debug("%r: %s answer from %s ignored", self, what, source)
                        continue
                    try:
                        answer = decode(data)
                    except PortMapDecodeError as exc:
                        self._counts["malformed"] += 1
                        logger.warning("%r: malformed %s answer from %s: %s", self, what,
                                       source, exc)  # fmt: skip
                        continue
                    except _NotSpoken as exc:
                        logger.info("%r: %s: %s", self, what, exc)
                        break
                    if matches(answer):
                        found.append(answer)
                        break
                nursery.cancel_scope.cancel()
        return found[0] if found else None

    # -- sessions --------------------------------------------------------------------------

    @asynccontextmanager
    async def _session(self, protocol: Protocol) -> AsyncIterator[_Session]:
        """A session with the gateway in ``protocol``, on a socket of its own."""
        assert self.local_ip is not None
        endpoint = await self.stack.bind((self.local_ip, 0))
        async with endpoint:
            session: _Session
            if protocol is Protocol.PCP:
                session = _Pcp(self, endpoint)
            elif protocol is Protocol.NATPMP:
                session = _NatPmp(self, endpoint)
            else:
                session = _Upnp(self, endpoint)
            yield session

    async def _find_gateway(self) -> bool:
        if self.gateway is None:
            self.gateway = await default_gateway()
        if self.gateway is None:
            logger.warning("%r: no default gateway found: no port mapping", self)
            return False
        if self.local_ip is None:
            self.local_ip = facing_address(self.stack.addresses, self.gateway)
        if self.local_ip is None:
            logger.warning("%r: no address of this host faces the gateway %s", self, self.gateway)
            return False
        return True


class _Session(abc.ABC):
    protocol: Protocol

    def __init__(self, mapper: PortMapper, endpoint: UdpEndpoint) -> None:
        self.mapper = mapper
        self.endpoint = endpoint

    @abc.abstractmethod
    async def probe(self) -> bool:
        """Whether the gateway speaks this protocol (and learn what mapping needs)."""

    @abc.abstractmethod
    async def map(self, internal_port: int, suggested: int, lifetime: int) -> _Granted | None:
        """Map (or renew) ``internal_port``; None when refused or unanswered (logged)."""

    @abc.abstractmethod
    async def check(self) -> bool:
        """Ask the gateway whether it kept its state; False when it lost it (map again)."""

    @abc.abstractmethod
    async def delete(self, internal_port: int, external_port: int) -> bool:
        """Delete the mapping; whether the gateway confirmed."""

    def _refused(self, what: str, reason: str) -> None:
        self.mapper._counts["refused"] += 1
        logger.warning("%r: %s %s at %s: %s", self.mapper, self.protocol, what,
                       self.mapper.gateway, reason)  # fmt: skip


class _Pcp(_Session):
    protocol = Protocol.PCP

    @staticmethod
    def _decode(data: bytes) -> pcp.Response:
        if data[:1] == bytes((natpmp.VERSION,)):
            raise _NotSpoken("the gateway answers NAT-PMP only (version 0)")
        return pcp.decode_response(data)

    def _request(self, opcode: int, lifetime: int, body: pcp.MapBody | None = None) -> bytes:
        assert self.mapper.local_ip is not None
        return pcp.encode_request(pcp.Request(opcode, lifetime, self.mapper.local_ip, body))

    async def _announce(self) -> pcp.Response | None:
        return await self.mapper._exchange(
            self.endpoint, self._request(pcp.OP_ANNOUNCE, 0), self._decode,
            lambda r: r.opcode == pcp.OP_ANNOUNCE, "PCP ANNOUNCE",
        )  # fmt: skip

    async def probe(self) -> bool:
        answer = await self._announce()
        if answer is None:
            return False
        if answer.result != pcp.Result.SUCCESS:
            logger.info("%r: PCP ANNOUNCE refused: %s", self.mapper, pcp.result_name(answer.result))
            return False
        self.mapper._epoch(self.protocol, answer.epoch)
        return True

    async def _map(self, internal_port: int, suggested: int, lifetime: int) -> pcp.Response | None:
        mapper = self.mapper
        assert mapper.local_ip is not None
        anywhere = any_address(ip_version(mapper.local_ip))
        body = pcp.MapBody(mapper.nonce, internal_port, suggested, anywhere)

        def ours(answer: pcp.Response) -> bool:
            return answer.opcode == pcp.OP_MAP and (
                answer.map is None or answer.map.nonce == mapper.nonce
            )

        return await mapper._exchange(
            self.endpoint, self._request(pcp.OP_MAP, lifetime, body), self._decode, ours, "PCP MAP"
        )

    async def map(self, internal_port: int, suggested: int, lifetime: int) -> _Granted | None:
        answer = await self._map(internal_port, suggested, lifetime)
        if answer is None:
            self._refused("MAP", "no answer")
            return None
        self.mapper._epoch(self.protocol, answer.epoch)
        if answer.result != pcp.Result.SUCCESS:
            self._refused("MAP", pcp.result_name(answer.result))
            return None
        body = answer.map
        if (
            body is None
            or body.internal_port != internal_port
            or body.protocol != pcp.PROTOCOL_UDP
            or body.external_port == 0
            or ipaddress.ip_address(body.external_ip).is_unspecified
            or answer.lifetime == 0
        ):
            self.mapper._counts["malformed"] += 1
            self._refused("MAP", f"an answer that does not fit the request: {answer}")
            return None
        return _Granted((body.external_ip, body.external_port), answer.lifetime)

    async def check(self) -> bool:
        answer = await self._announce()
        return answer is None or not self.mapper._epoch(self.protocol, answer.epoch)

    async def delete(self, internal_port: int, external_port: int) -> bool:
        answer = await self._map(internal_port, 0, 0)
        return answer is not None and answer.result == pcp.Result.SUCCESS


class _NatPmp(_Session):
    protocol = Protocol.NATPMP

    @staticmethod
    def _decode(data: bytes) -> natpmp.Response:
        if data[:1] == bytes((pcp.VERSION,)):
            raise _NotSpoken("the gateway answers PCP only (version 2)")
        return natpmp.decode_response(data)

    async def _external(self) -> natpmp.Response | None:
        return await self.mapper._exchange(
            self.endpoint,
            natpmp.encode_request(natpmp.ExternalAddressRequest()),
            self._decode,
            lambda r: (
                r.opcode == natpmp.RESPONSE_BIT | natpmp.OP_EXTERNAL_ADDRESS
                if isinstance(r, natpmp.ErrorResponse)
                else isinstance(r, natpmp.ExternalAddressResponse)
            ),
            "NAT-PMP external address",
        )

    async def probe(self) -> bool:
        answer = await self._external()
        if not isinstance(answer, natpmp.ExternalAddressResponse):
            if answer is not None:
                logger.info("%r: NAT-PMP refused: %s", self.mapper,
                            natpmp.result_name(answer.result))  # fmt: skip
            return False
        if answer.result != natpmp.Result.SUCCESS:
            logger.info("%r: NAT-PMP refused: %s", self.mapper, natpmp.result_name(answer.result))
            return False
        self.mapper._epoch(self.protocol, answer.epoch)
        self.mapper._natpmp_ip = answer.external_ip
        return True

    async def _map(
        self, internal_port: int, suggested: int, lifetime: int
    ) -> natpmp.Response | None:
        request = natpmp.MapRequest(internal_port, suggested, lifetime)

        def ours(answer: natpmp.Response) -> bool:
            if isinstance(answer, natpmp.MapResponse):
                return answer.opcode == natpmp.OP_MAP_UDP and answer.internal_port == internal_port
            return (
                isinstance(answer, natpmp.ErrorResponse)
                and answer.opcode == natpmp.RESPONSE_BIT | natpmp.OP_MAP_UDP
            )

        return await self.mapper._exchange(
            self.endpoint, natpmp.encode_request(request), self._decode, ours,
            "NAT-PMP mapping",
        )  # fmt: skip

    async def map(self, internal_port: int, suggested: int, lifetime: int) -> _Granted | None:
        mapper = self.mapper
        if mapper._natpmp_ip is None and not await self.probe():
            self._refused("mapping", "no external address")
            return None
        answer = await self._map(internal_port, suggested, lifetime)
        if answer is None:
            self._refused("mapping", "no answer")
            return None
        mapper._epoch(self.protocol, answer.epoch)
        if not isinstance(answer, natpmp.MapResponse) or answer.result != natpmp.Result.SUCCESS:
            self._refused("mapping", natpmp.result_name(answer.result))
            return None
        if answer.external_port == 0 or answer.lifetime == 0:
            mapper._counts["malformed"] += 1
            self._refused("mapping", f"an answer that does not fit the request: {answer}")
            return None
        assert mapper._natpmp_ip is not None
        return _Granted((mapper._natpmp_ip, answer.external_port), answer.lifetime)

    async def check(self) -> bool:
        answer = await self._external()
        if not isinstance(answer, natpmp.ExternalAddressResponse):
            return True  # unanswered: the renewal will tell
        reset = self.mapper._epoch(self.protocol, answer.epoch)
        moved = answer.external_ip != self.mapper._natpmp_ip
        if moved:
            logger.warning("%r: the gateway's external address moved %s -> %s", self.mapper,
                           self.mapper._natpmp_ip, answer.external_ip)  # fmt: skip
            self.mapper._natpmp_ip = answer.external_ip
        return not (reset or moved)

    async def delete(self, internal_port: int, external_port: int) -> bool:
        answer = await self._map(internal_port, 0, 0)
        return isinstance(answer, natpmp.MapResponse) and answer.result == natpmp.Result.SUCCESS


class _Upnp(_Session):
    protocol = Protocol.UPNP

    async def _soap(self, action: str, arguments: dict[str, str | int]) -> dict[str, str]:
        """Post ``action``; raises SoapFault, PortMapDecodeError, OSError or TooSlowError."""
        igd = self.mapper._igd
        assert igd is not None and self.mapper.gateway is not None
        host, port, path = upnp.check_url(igd.control_url, self.mapper.gateway, "control URL")
        headers = (
            ("Content-Type", 'text/xml; charset="utf-8"'),
            ("SOAPAction", upnp.soap_action(igd, action)),
        )
        with trio.fail_after(self.mapper.config.http_timeout):
            status, body = await http.request(
                "POST", host, port, path, body=upnp.soap_request(igd, action, arguments),
                headers=headers, max_size=upnp.MAX_XML,
            )  # fmt: skip
        if status != 200 and b"Fault" not in body:
            raise PortMapDecodeError(f"{action}: HTTP status {status}")
        return upnp.parse_soap(body, action)

    async def _discover(self) -> upnp.IgdService:
        mapper = self.mapper
        config = mapper.config
        gateway = mapper.gateway
        assert gateway is not None
        search = upnp.msearch()
        with trio.fail_after(config.http_timeout):
            await self.endpoint.send_to(search, (gateway, config.ssdp_port))
            if config.ssdp_port == upnp.SSDP_PORT and ip_version(gateway) == 4:
                await self.endpoint.send_to(search, upnp.SSDP_ADDRESS)
            while True:
                data, source = await self.endpoint.receive_from()
                if source[0] != gateway:
                    logger.debug("%r: SSDP answer from %s ignored (not the gateway)", mapper,
                                 source)  # fmt: skip
                    continue
                answer = upnp.parse_ssdp(data, gateway)
                break
            host, port, path = upnp.check_url(answer.location, gateway, "LOCATION")
            status, body = await http.request("GET", host, port, path, max_size=upnp.MAX_XML)
        if status != 200:
            raise PortMapDecodeError(f"device description: HTTP status {status}")
        return upnp.parse_description(body, answer.location, gateway)

    async def _external_ip(self) -> str:
        """GetExternalIPAddress. An empty answer is the IGD saying it has none it can use (no
        public address: miniupnpd on a private or reserved WAN address): :class:`_NotSpoken`."""
        reply = await self._soap("GetExternalIPAddress", {})
        text = reply.get("NewExternalIPAddress", "")
        if not text:
            raise _NotSpoken("no usable external address (it answered an empty one)")
        return str(ipaddress.ip_address(text))

    async def probe(self) -> bool:
        mapper = self.mapper
        try:
            mapper._igd = await self._discover()
            mapper._upnp_ip = await self._external_ip()
        except trio.TooSlowError:
            return False
        except _NotSpoken as exc:
            logger.info("%r: UPnP IGD at %s: %s", mapper, mapper.gateway, exc)
            return False
        except (PortMapDecodeError, ValueError) as exc:
            mapper._counts["malformed"] += 1
            logger.warning("%r: malformed UPnP answer from %s: %s", mapper, mapper.gateway, exc)
            return False
        except (OSError, upnp.SoapFault) as exc:
            logger.info("%r: UPnP IGD at %s unusable: %s", mapper, mapper.gateway, exc)
            return False
        logger.debug("%r: UPnP IGD %s, external IP %s", mapper, mapper._igd, mapper._upnp_ip)
        return True

    async def map(self, internal_port: int, suggested: int, lifetime: int) -> _Granted | None:
        mapper = self.mapper
        if (mapper._igd is None or mapper._upnp_ip is None) and not await self.probe():
            self._refused("AddPortMapping", "no IGD")
            return None
        port = suggested or internal_port
        lease = lifetime
        try:
            for _ in range(_UPNP_PORT_TRIES):
                try:
                    await self._soap("AddPortMapping", self._mapping(internal_port, port, lease))
                except upnp.SoapFault as fault:
                    if fault.code == upnp.ONLY_PERMANENT_LEASES and lease:
                        lease = 0
                    elif fault.code == upnp.CONFLICT:
                        port = random.randint(1024, 65535)
                    else:
                        raise
                    continue
                mapper._upnp_ip = await self._external_ip()
                return _Granted((mapper._upnp_ip, port), lease or lifetime)
        except trio.TooSlowError:
            self._refused("AddPortMapping", "no answer")
            return None
        except _NotSpoken as exc:
            self._refused("AddPortMapping", str(exc))
            return None
        except (PortMapDecodeError, ValueError) as exc:
            mapper._counts["malformed"] += 1
            self._refused("AddPortMapping", f"malformed answer: {exc}")
            return None
        except (OSError, upnp.SoapFault) as exc:
            self._refused("AddPortMapping", str(exc))
            return None
        self._refused("AddPortMapping", f"{_UPNP_PORT_TRIES} ports taken or refused")
        return None

    def _mapping(self, internal_port: int, external_port: int, lease: int) -> dict[str, str | int]:
        assert self.mapper.local_ip is not None
        return {
            "NewRemoteHost": "",
            "NewExternalPort": external_port,
            "NewProtocol": "UDP",
            "NewInternalPort": internal_port,
            "NewInternalClient": self.mapper.local_ip,
            "NewEnabled": 1,
            "NewPortMappingDescription": self.mapper.config.description,
            "NewLeaseDuration": lease,
        }

    async def check(self) -> bool:
        """UPnP has no epoch: the renewal (AddPortMapping again) restores a forgotten mapping."""
        await trio.lowlevel.checkpoint()
        return True

    async def delete(self, internal_port: int, external_port: int) -> bool:
        if self.mapper._igd is None:
            await trio.lowlevel.checkpoint()
            return False
        arguments: dict[str, str | int] = {
            "NewRemoteHost": "", "NewExternalPort": external_port, "NewProtocol": "UDP",
        }  # fmt: skip
        try:
            await self._soap("DeletePortMapping", arguments)
        except (trio.TooSlowError, PortMapDecodeError, OSError, upnp.SoapFault) as exc:
            logger.info("%r: DeletePortMapping failed: %s", self.mapper, exc)
            return False
        return True


# -- the server -------------------------------------------------------------------------------


class PortMapperServer(Actor):
    """Finds the gateway, probes, maps, renews and checks; deletes the mapping on shutdown."""

    def __init__(self, mapper: PortMapper) -> None:
        self.mapper = mapper
        self._work = trio.CancelScope()
        """Probing, mapping and renewing: cancelled first thing at shutdown."""

    async def init(self) -> None:
        self.mapper._attach(self.ref)
        self.start_soon(self._run_until_stopped)
        if self.mapper.detector is not None:
            self.start_soon(self._watch_profile)

    async def _watch_profile(self) -> None:
        detector = self.mapper.detector
        assert detector is not None
        async for _ in detector.profile.eventual_values(lambda p: p is not None):
            self.mapper._recheck()

    async def _run_until_stopped(self) -> None:
        with self._work:
            await self._run()

    async def _run(self) -> None:
        mapper = self.mapper
        if not await mapper._find_gateway():
            return
        while True:
            try:
                await self._attempt()
            except OSError as exc:  # a socket of our own could not be bound or used
                logger.warning("%r: port mapping failed: %s; trying again in %.0f s", mapper,
                               exc, mapper.config.retry_interval)  # fmt: skip
            if mapper.mapping.value is None:
                await trio.sleep(mapper.config.retry_interval)

    async def _attempt(self) -> None:
        """Probe (unless a mapping is held), then map and hold it until it is lost."""
        mapper = self.mapper
        mapping = mapper.mapping.value
        protocol = mapping.protocol if mapping is not None else await self._probe_all()
        if protocol is None:
            logger.info(
                "%r: no port-mapping protocol (%s) answered at %s; punching only, probing "
                "again in %.0f s",
                mapper, ", ".join(mapper.config.protocols), mapper.gateway,
                mapper.config.retry_interval,
            )  # fmt: skip
            return
        async with mapper._session(protocol) as session:
            await self._hold(session)

    async def _probe_all(self) -> Protocol | None:
        """Probe every protocol at once; the first that answers wins (the others stop)."""
        mapper = self.mapper
        mapper._counts["probes"] += 1
        winner: list[Protocol] = []

        async def probe(protocol: Protocol, cancel: trio.CancelScope) -> None:
            try:
                async with mapper._session(protocol) as session:
                    if await session.probe() and not winner:
                        winner.append(protocol)
                        cancel.cancel()
            except OSError as exc:
                logger.info("%r: %s probe failed: %s", mapper, protocol, exc)

        async with trio.open_nursery() as nursery:
            for protocol in mapper.config.protocols:
                nursery.start_soon(probe, protocol, nursery.cancel_scope)
        if winner:
            logger.info("%r: the gateway %s speaks %s", mapper, mapper.gateway, winner[0])
        return winner[0] if winner else None

    async def _hold(self, session: _Session) -> None:
        """Map, then renew and check until the mapping is lost (then return, unmapped)."""
        mapper = self.mapper
        config = mapper.config
        while True:
            current = mapper.mapping.value
            suggested = current.external[1] if current is not None else mapper.internal_port
            granted = await session.map(mapper.internal_port, suggested, config.lifetime)
            now = trio.current_time()
            if granted is None:
                if current is None or now >= current.expires_at:
                    if current is not None:
                        logger.warning("%r: the mapping %s expired unrenewed", mapper,
                                       current.external)  # fmt: skip
                    mapper._set(None)
                    return
                retry_at = now + min(config.retry_interval, (current.expires_at - now) / 2)
                mapper._set(attrs.evolve(current, renew_at=retry_at))
            else:
                self._granted(session.protocol, granted, current, now)
            while True:
                current = mapper.mapping.value
                if current is None:
                    return
                wake = min(current.renew_at, trio.current_time() + config.check_interval)
                await trio.sleep_until(wake)
                if trio.current_time() >= current.renew_at or not await session.check():
                    break

    def _granted(
        self, protocol: Protocol, granted: _Granted, old: PortMapping | None, now: float
    ) -> None:
        mapper = self.mapper
        mapper._counts["granted"] += 1
        if old is not None:
            mapper._counts["renewals"] += 1
        assert mapper.local_ip is not None
        mapping = PortMapping(
            protocol,
            (mapper.local_ip, mapper.internal_port),
            granted.external,
            granted.lifetime,
            renew_at=now + granted.lifetime / 2,
            expires_at=now + granted.lifetime,
        )
        if old is None or old.external != mapping.external:
            logger.info("%r: %s mapped %s:%d -> %s:%d for %d s", mapper, protocol,
                        *mapping.internal, *mapping.external, granted.lifetime)  # fmt: skip
        mapper._set(mapping)

    async def terminate(self, reason: object) -> None:
        """On shutdown (not a crash: the next incarnation renews), delete the mapping."""
        mapper = self.mapper
        self._work.cancel()
        mapping = mapper.mapping.value
        if mapping is None or reason not in (Exit.SHUTDOWN, Exit.NORMAL):
            return
        mapper._set(None)
        deadline = trio.current_time() + mapper.config.request_timeout + mapper.config.http_timeout
        deleted = False
        with trio.CancelScope(deadline=deadline, shield=True):
            try:
                async with mapper._session(mapping.protocol) as session:
                    deleted = await session.delete(mapping.internal[1], mapping.external[1])
            except OSError as exc:
                logger.info("%r: could not ask the gateway to delete: %s", mapper, exc)
        if deleted:
            mapper._counts["deleted"] += 1
            logger.info("%r: deleted the mapping %s:%d", mapper, *mapping.external)
        else:
            logger.info("%r: the gateway did not confirm deleting %s:%d (it lapses in %d s)",
                        mapper, *mapping.external, mapping.lifetime)  # fmt: skip


PortMapper.server_class = PortMapperServer


def port_mapping_config(value: PortMapConfig | bool | None) -> PortMapConfig | None:
    """``NatConfig.port_mapping``'s converter: True means the defaults, False or None off."""
    if value is True:
        return PortMapConfig()
    if value is False or value is None:
        return None
    if isinstance(value, PortMapConfig):
        return value
    raise ValueError(f"port_mapping must be a PortMapConfig or a bool, not {value!r}")


__all__ = [
    "PortMapConfig",
    "PortMapper",
    "PortMapperServer",
    "PortMapperStatistics",
    "PortMapping",
    "Protocol",
    "port_mapping_config",
]
