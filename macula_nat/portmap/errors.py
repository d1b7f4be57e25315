"""The one error a port-mapping decoder raises on malformed input."""

from __future__ import annotations


class PortMapDecodeError(ValueError):
    """Bytes (or text) that are not a well-formed NAT-PMP, PCP, SSDP, SOAP or device-description
    message; the message says what is wrong. Decoders raise nothing else on any input."""
