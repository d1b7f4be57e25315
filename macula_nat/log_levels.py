"""Per-module log levels, by our logger names or the Erlang guide's module names.

The guide sets levels per module (``logger:set_module_level(macula_nat_detector, debug)``);
here each guide module maps to the loggers of the code that mirrors it, so
``set_log_level("macula_nat_detector", "debug")`` and
``set_log_level("macula_nat.nat.detector", "debug")`` do the same. The command line's
``--log NAME=LEVEL`` (repeatable) calls :func:`set_log_level`.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Mapping
from typing import Final

__all__ = ["GUIDE_MODULES", "LEVELS", "UnknownLogger", "parse_log_option", "set_log_level"]

GUIDE_MODULES: Final[Mapping[str, tuple[str, ...]]] = {
    "macula_nat_system": ("macula_nat.system",),
    "macula_nat_detector": ("macula_nat.nat.detector",),
    "macula_nat_cache": ("macula_nat.nat.cache",),
    "macula_nat_coordinator": ("macula_nat.traversal.coordinator", "macula_nat.traversal.puncher"),
    "macula_nat_connector": ("macula_nat.traversal.connector",),
    "macula_relay_node": ("macula_nat.relay.node", "macula_nat.relay.session"),
    "macula_relay_registry": ("macula_nat.relay.registry", "macula_nat.relay.client"),
}
"""The guide's module name -> the loggers of our modules that mirror it."""

LEVELS: Final[Mapping[str, int]] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "notice": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
"""Level names accepted (the guide's Erlang ``notice`` is Python's ``info``)."""


class UnknownLogger(ValueError):
    """A ``--log`` / :func:`set_log_level` name that is neither ours nor the guide's, or a
    level that is not one of :data:`LEVELS`."""


def _loggers(name: str) -> tuple[str, ...]:
    guide = GUIDE_MODULES.get(name) or GUIDE_MODULES.get(f"macula_{name}")
    if guide is not None:
        return guide
    if name == "macula_nat" or name.startswith("macula_nat."):
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if found:
            return (name,)
    known = ", ".join(sorted(GUIDE_MODULES))
    raise UnknownLogger(
        f"no module {name!r} to log: give one of ours (such as macula_nat.nat.detector) "
        f"or one of the guide's ({known})"
    )


def set_log_level(name: str, level: str | int) -> tuple[str, ...]:
    """Set the level of ``name``'s loggers: a module of ours (``macula_nat.relay``,
    ``macula_nat.nat.detector``), or a guide module (``macula_nat_detector``, or
    ``nat_detector`` for short). ``level`` is a name of :data:`LEVELS` or a ``logging``
    number. Returns the loggers set; raises :class:`UnknownLogger` for anything else."""
    if isinstance(level, str):
        number = LEVELS.get(level.lower())
        if number is None:
            raise UnknownLogger(f"no log level {level!r}: one of {', '.join(LEVELS)}")
    else:
        number = level
    loggers = _loggers(name)
    for logger_name in loggers:
        logging.getLogger(logger_name).setLevel(number)
    return loggers


def parse_log_option(option: str) -> tuple[str, str]:
    """``"macula_nat.nat.detector=debug"`` -> ``("macula_nat.nat.detector", "debug")``,
    checked (raises :class:`UnknownLogger` with what is wrong)."""
    name, sep, level = option.partition("=")
    if not sep or not name or not level:
        raise UnknownLogger(f"--log wants NAME=LEVEL (such as nat_detector=debug), not {option!r}")
    if level.lower() not in LEVELS:
        raise UnknownLogger(f"no log level {level!r}: one of {', '.join(LEVELS)}")
    _loggers(name)
    return name, level
