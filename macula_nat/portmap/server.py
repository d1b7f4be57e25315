"""The gateway's side of NAT-PMP and PCP, sans-IO: what a router answers to a request.

The simulated NAT (:class:`~macula_nat.net.sim.nat_box.NatBox`) serves it on its LAN address;
tests use it as a router that can be told to forget (:meth:`PortMapServer.reset`). The mapping
table is the caller's (:class:`PortMapTable`): this module only speaks the protocols.
"""

from __future__ import annotations

import logging
from typing import Final, Protocol

import attrs

from macula_nat.net.address import Address

from . import natpmp, pcp
from .errors import PortMapDecodeError

logger = logging.getLogger(__name__)

MIN_LIFETIME: Final = 120
"""RFC 6887 15: a server grants at least two minutes (we keep it for NAT-PMP too)."""


class PortMapTable(Protocol):
    """Where a server's mappings live (the NAT's table)."""

    def map_port(
        self, internal: Address, suggested_port: int, lifetime: float, now: float
    ) -> Address | None:
        """Map ``internal`` (EIF: anyone may send to it) until ``now + lifetime``; the external
        address, the same one on a renewal; None when no port is free."""

    def unmap_port(self, internal: Address, now: float) -> bool:
        """Delete ``internal``'s mapping; whether there was one."""


@attrs.define
class PortMapServer:
    """Answers NAT-PMP (when ``speaks_natpmp``) and PCP (when ``speaks_pcp``) requests.

    ``external_ip`` is what NAT-PMP's external address request answers; lifetimes are clamped
    to ``[MIN_LIFETIME, max_lifetime]``; the epoch counts from ``started`` (or the last reset).
    """

    table: PortMapTable
    external_ip: str
    started: float
    speaks_natpmp: bool = True
    speaks_pcp: bool = True
    max_lifetime: int = 3600
    requests: int = 0
    malformed: int = 0

    def reset(self, now: float) -> None:
        """The router lost its state (a reboot): the epoch starts again from zero."""
        self.started = now

    def _epoch(self, now: float) -> int:
        return max(0, int(now - self.started))

    def _lifetime(self, asked: int) -> int:
        return min(self.max_lifetime, max(MIN_LIFETIME, asked))

    def handle(self, data: bytes, source: Address, now: float) -> bytes | None:
        """The answer to ``data`` from ``source`` (None: nothing to send back)."""
        self.requests += 1
        version = data[0] if data else None
        try:
            if version == natpmp.VERSION:
                if not self.speaks_natpmp:
                    return self._pcp_header(0, pcp.Result.UNSUPP_VERSION, now)
                return self._natpmp(natpmp.decode_request(data), source, now)
            if version == pcp.VERSION:
                if not self.speaks_pcp:
                    return natpmp.encode_response(
                        natpmp.ErrorResponse(
                            natpmp.RESPONSE_BIT, natpmp.Result.UNSUPPORTED_VERSION,
                            self._epoch(now),
                        )
                    )  # fmt: skip
                return self._pcp(pcp.decode_request(data), source, now)
        except PortMapDecodeError as exc:
            self.malformed += 1
            logger.debug("malformed port-mapping request from %s: %s", source, exc)
            return None
        self.malformed += 1
        return None

    def _natpmp(self, request: natpmp.Request, source: Address, now: float) -> bytes:
        epoch = self._epoch(now)
        if isinstance(request, natpmp.ExternalAddressRequest):
            return natpmp.encode_response(
                natpmp.ExternalAddressResponse(natpmp.Result.SUCCESS, epoch, self.external_ip)
            )
        if request.opcode != natpmp.OP_MAP_UDP:
            return natpmp.encode_response(
                natpmp.ErrorResponse(
                    natpmp.RESPONSE_BIT | request.opcode, natpmp.Result.UNSUPPORTED_OPCODE, epoch
                )
            )
        internal = (source[0], request.internal_port)
        if request.lifetime == 0:
            self.table.unmap_port(internal, now)
            return natpmp.encode_response(
                natpmp.MapResponse(natpmp.Result.SUCCESS, epoch, request.internal_port, 0, 0)
            )
        lifetime = self._lifetime(request.lifetime)
        external = self.table.map_port(internal, request.external_port, lifetime, now)
        if external is None:
            return natpmp.encode_response(
                natpmp.MapResponse(
                    natpmp.Result.OUT_OF_RESOURCES, epoch, request.internal_port, 0, 0
                )
            )
        return natpmp.encode_response(
            natpmp.MapResponse(
                natpmp.Result.SUCCESS, epoch, request.internal_port, external[1], lifetime
            )
        )

    def _pcp_header(self, opcode: int, result: int, now: float) -> bytes:
        return pcp.encode_response(pcp.Response(opcode, result, 0, self._epoch(now)))

    def _pcp(self, request: pcp.Request, source: Address, now: float) -> bytes:
        epoch = self._epoch(now)
        if request.client_ip != source[0]:
            return self._pcp_header(request.opcode, pcp.Result.ADDRESS_MISMATCH, now)
        if request.opcode == pcp.OP_ANNOUNCE:
            return self._pcp_header(pcp.OP_ANNOUNCE, pcp.Result.SUCCESS, now)
        if request.opcode != pcp.OP_MAP or request.map is None:
            return self._pcp_header(request.opcode, pcp.Result.UNSUPP_OPCODE, now)
        body = request.map
        if body.protocol != pcp.PROTOCOL_UDP:
            return pcp.encode_response(
                pcp.Response(pcp.OP_MAP, pcp.Result.UNSUPP_PROTOCOL, 0, epoch, body)
            )
        internal = (source[0], body.internal_port)
        if request.lifetime == 0:
            self.table.unmap_port(internal, now)
            return pcp.encode_response(pcp.Response(pcp.OP_MAP, pcp.Result.SUCCESS, 0, epoch,
                                                    body))  # fmt: skip
        lifetime = self._lifetime(request.lifetime)
        external = self.table.map_port(internal, body.external_port, lifetime, now)
        if external is None:
            return pcp.encode_response(
                pcp.Response(pcp.OP_MAP, pcp.Result.NO_RESOURCES, 0, epoch, body)
            )
        granted = attrs.evolve(body, external_ip=external[0], external_port=external[1])
        return pcp.encode_response(
            pcp.Response(pcp.OP_MAP, pcp.Result.SUCCESS, lifetime, epoch, granted)
        )
