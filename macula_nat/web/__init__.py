"""The live status page: an ASGI app showing a node, a gateway or the demo.

``macula_nat.web.app(system)`` is a running node's page, for any ASGI server; a Trio program
serves it with hypercorn's Trio worker (:func:`serve_page`, or ``hypercorn.trio.serve``).
``macula-nat status``, ``macula-nat gateway --web`` and ``macula-nat demo --web`` run one.
"""

from macula_nat.web.app import app, demo_app, gateway_app
from macula_nat.web.serve import serve_page
from macula_nat.web.views import CONNECT_TIMEOUT, DemoBoard, GatewayView, NodeView

__all__ = [
    "CONNECT_TIMEOUT",
    "DemoBoard",
    "GatewayView",
    "NodeView",
    "app",
    "demo_app",
    "gateway_app",
    "serve_page",
]
