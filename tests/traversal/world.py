"""The simulated world of the NAT-pair tests: the library's (``macula_nat.sim_world``)."""

from macula_nat.sim_world import ALTERNATE, PRIMARY, RELAY, SITE_LINK, World, open_world

__all__ = ["ALTERNATE", "PRIMARY", "RELAY", "SITE_LINK", "World", "open_world"]
