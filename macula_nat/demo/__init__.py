"""The demonstrations ``macula-nat demo`` runs: every NAT type connecting to every other on a
simulated internet (:mod:`.nat`, on the world of :mod:`.world`), and a supervision tree doing
real work under faults (:mod:`.runtime`)."""
