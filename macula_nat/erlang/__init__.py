"""The Erlang guide's modules, mirrored: ``nat_detector.detect()`` is
``macula_nat_detector:detect/0`` on the NAT system running in this task's context.

``nat_system``, ``nat_detector``, ``nat_cache``, ``nat_coordinator``, ``nat_connector``,
``relay_registry`` and ``relay_node`` (also reachable as ``macula_nat.nat_detector`` etc.).
Each call here is a one-line delegation to the handle it names, raising the same errors; the
classes under :mod:`macula_nat.system` are the Python API, these are the guide's spelling of it.
"""
