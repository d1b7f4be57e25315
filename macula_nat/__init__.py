"""macula-nat: NAT traversal for Trio, as a supervised actor tree.

Start with :mod:`macula_nat.system` (``open_nat_system``); :mod:`macula_nat.actors` is the
runtime everything runs on. ``macula-nat --help`` lists the command line.
"""
