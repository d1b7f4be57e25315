"""The Erlang guide's modules, mirrored: ``nat_detector.detect()`` is
``macula_nat_detector:detect/0`` on the NAT system running in this task's context.

Each call here is a one-line delegation to the actor it names; the classes under
:mod:`macula_nat.system` are the Python API, these are the guide's spelling of it.
"""
