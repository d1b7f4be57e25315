"""Errors of NAT detection, with messages a person can act on."""

from __future__ import annotations


class DetectionError(Exception):
    """Base class: NAT detection could not produce a profile."""


class NoObservers(DetectionError):
    """Detection was asked for with no STUN observer to ask."""

    def __init__(self, message: str = "no STUN observers: connect to a gateway first") -> None:
        super().__init__(message)


class DetectionTimeout(DetectionError, TimeoutError):
    """No STUN observer answered at all within the detection timeout."""


class TransactionTimeout(TimeoutError):
    """A STUN transaction got no response before its deadline or its retransmissions ran out."""


class NotDetected(DetectionError):
    """No profile yet: the NAT has not been detected since the detector started."""
