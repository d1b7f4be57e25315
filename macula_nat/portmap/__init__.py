"""Port mapping: ask the router to open a port (NAT-PMP, PCP, UPnP IGD).

Sans-IO codecs (:mod:`.natpmp`, :mod:`.pcp`, :mod:`.upnp`) and the epoch check (:mod:`.epoch`);
the Trio client that probes all three at once and keeps a mapping is :mod:`.client`.
"""
