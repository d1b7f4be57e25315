from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from macula_nat.cli.main import build_parser, main
from macula_nat.log_levels import GUIDE_MODULES, UnknownLogger, parse_log_option, set_log_level


@pytest.fixture(autouse=True)
def restore_levels() -> Iterator[None]:
    names = [n for loggers in GUIDE_MODULES.values() for n in loggers] + ["macula_nat.relay"]
    before = {n: logging.getLogger(n).level for n in names}
    yield
    for name, level in before.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.parametrize("guide_name", sorted(GUIDE_MODULES))
def test_each_guide_module_name_sets_its_loggers(guide_name: str) -> None:
    loggers = set_log_level(guide_name, "debug")
    assert loggers == GUIDE_MODULES[guide_name]
    for name in loggers:
        __import__(name)  # each mapped logger is a module of ours that logs
        assert logging.getLogger(name).getEffectiveLevel() == logging.DEBUG
    short = guide_name.removeprefix("macula_")
    assert set_log_level(short, "error") == loggers
    assert all(logging.getLogger(n).level == logging.ERROR for n in loggers)


def test_our_logger_names_work_too_and_the_connector_logs() -> None:
    assert set_log_level("macula_nat.relay", "WARNING") == ("macula_nat.relay",)
    assert logging.getLogger("macula_nat.relay.node").getEffectiveLevel() == logging.WARNING
    import macula_nat.traversal.connector as connector

    assert connector.logger.name == "macula_nat.traversal.connector"
    set_log_level("macula_nat_connector", logging.INFO)
    assert connector.logger.getEffectiveLevel() == logging.INFO


@pytest.mark.parametrize(
    ("option", "complaint"),
    [
        ("nat_detectr=debug", "no module 'nat_detectr'"),
        ("macula_nat.no_such=debug", "no module"),
        ("nat_detector=loud", "no log level 'loud'"),
        ("nat_detector", "NAME=LEVEL"),
    ],
)
def test_unknown_names_and_levels_are_refused_clearly(
    option: str, complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(UnknownLogger, match=complaint):
        parse_log_option(option)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--log", option, "detect"])
    assert complaint in capsys.readouterr().err


def test_the_cli_takes_log_options_repeatedly() -> None:
    args = build_parser().parse_args(
        ["--log", "macula_nat.nat.detector=debug", "--log", "macula_relay_node=info", "detect"]
    )
    assert args.log == [("macula_nat.nat.detector", "debug"), ("macula_relay_node", "info")]


def test_the_command_line_applies_its_log_options() -> None:
    """``macula-nat --log macula_nat_detector=debug detect`` sets the detector's logger before
    the command runs (here ``detect`` fails at once: no observer given, nothing is sent)."""
    with pytest.raises(SystemExit, match="no STUN observers"):
        main(["--log", "macula_nat_detector=debug", "--log", "macula_nat.relay=error", "detect"])
    assert logging.getLogger("macula_nat.nat.detector").level == logging.DEBUG
    assert logging.getLogger("macula_nat.relay").level == logging.ERROR
