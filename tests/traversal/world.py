"""The simulated world of the NAT-pair tests: the library's (``macula_nat.demo.world``)."""

from macula_nat.demo.world import ALTERNATE, PRIMARY, RELAY, RELAY6, SITE_LINK, World, open_world

__all__ = ["ALTERNATE", "PRIMARY", "RELAY", "RELAY6", "SITE_LINK", "World", "open_world"]
