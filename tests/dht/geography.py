"""A latency model of the world for relay-choice simulations: places on the globe and round
trips between them.

Nodes and relays sit around 24 metros on six continents, weighted roughly as Internet users are
(Asia 35%, North America 25%, Europe 22%, South America 9%, Africa and Oceania 4-5% each),
scattered a few hundred kilometres around each. A round trip is the great-circle distance at
200 km/ms (light in fibre) there and back, times 1.5 for routes that are not great circles, plus
each end's access delay (2-15 ms for nodes, 1-5 ms for relays in data centres). Landmarks are
the metros themselves (a deployment's gateways).
"""

from __future__ import annotations

import math
import random
from typing import Final

import attrs

FIBRE_KM_PER_MS: Final = 200.0
ROUTE_STRETCH: Final = 1.5
EARTH_KM: Final = 6371.0

CONTINENTS: Final = (
    (0.05, ((6.5, 3.4), (-26.2, 28.0), (30.0, 31.2))),  # Lagos, Johannesburg, Cairo
    (0.35, ((35.7, 139.7), (31.2, 121.5), (28.6, 77.2), (1.3, 103.8), (37.6, 127.0))),
    (0.22, ((51.5, -0.1), (50.1, 8.7), (48.9, 2.4), (59.3, 18.1), (40.4, -3.7))),
    (0.25, ((40.7, -74.0), (37.8, -122.4), (41.9, -87.6), (32.8, -96.8), (47.6, -122.3))),
    (0.04, ((-33.9, 151.2), (-37.8, 145.0), (-36.8, 174.8))),  # Sydney, Melbourne, Auckland
    (0.09, ((-23.6, -46.6), (-34.6, -58.4), (4.7, -74.1))),  # Sao Paulo, Buenos Aires, Bogota
)
"""(share of nodes, metro centres as (latitude, longitude)) per continent."""


@attrs.frozen
class Place:
    latitude: float
    longitude: float
    access: float = 0.0
    """Milliseconds the place's own link adds to every round trip."""


LANDMARKS: Final = tuple(Place(lat, lon) for _, metros in CONTINENTS for lat, lon in metros)


def rtt(a: Place, b: Place) -> float:
    """The round trip between ``a`` and ``b`` in milliseconds."""
    la, lb = math.radians(a.latitude), math.radians(b.latitude)
    cosine = math.sin(la) * math.sin(lb) + math.cos(la) * math.cos(lb) * math.cos(
        math.radians(a.longitude - b.longitude)
    )
    km = EARTH_KM * math.acos(max(-1.0, min(1.0, cosine)))
    return 2 * ROUTE_STRETCH * km / FIBRE_KM_PER_MS + a.access + b.access


def place(rng: random.Random, access: tuple[float, float]) -> Place:
    """A random place: a continent by its share, one of its metros, scattered around it."""
    shares = [share for share, _ in CONTINENTS]
    _, metros = rng.choices(CONTINENTS, weights=shares)[0]
    latitude, longitude = rng.choice(metros)
    return Place(
        max(-89.0, min(89.0, latitude + rng.gauss(0, 4))),
        longitude + rng.gauss(0, 5),
        rng.uniform(*access),
    )


def node_place(rng: random.Random) -> Place:
    return place(rng, (2.0, 15.0))


def relay_place(rng: random.Random) -> Place:
    return place(rng, (1.0, 5.0))
