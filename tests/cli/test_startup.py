"""The command line starts fast: parsing loads no verb, and a verb loads only what it needs.

Each check runs in a fresh interpreter and looks at ``sys.modules``, so an eager import added
anywhere on the way (a verb's module, ``macula_nat.net``, the package root) fails here. The
timing itself is in ``make bench`` (tests/bench/startup.py), not in a test.
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
from types import ModuleType

import pytest

import macula_nat
import macula_nat.net
from macula_nat.cli import build_parser

HEAVY = ("trio", "aioquic", "cryptography", "hypercorn", "attrs")
"""What no parse may load: the event loop, the QUIC stack, the node keys' crypto, the web
server, and the library's data classes."""
NOT_FOR_DETECT = (
    "aioquic",
    "cryptography",
    "hypercorn",
    "macula_nat.actors",
    "macula_nat.connection",
    "macula_nat.dht",
    "macula_nat.relay",
    "macula_nat.traversal",
    "macula_nat.web",
)
"""What ``detect`` does not need: the actor runtime (it detects once), connections, the
directory, relays, the status page."""


def loaded_after(code: str) -> list[str]:
    """The modules of interest loaded once ``code`` has run in a fresh interpreter."""
    watched = sorted({*HEAVY, *NOT_FOR_DETECT})
    script = (
        f"import sys\n{code}\n"
        f"print(__import__('json').dumps([m for m in {watched!r} if m in sys.modules]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    loaded: list[str] = json.loads(result.stdout.splitlines()[-1])
    return loaded


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["demo", "--help"],
        ["detect", "--help"],
        ["observe", "--help"],
        ["gateway", "--help"],
        ["listen", "--help"],
        ["connect", "--help"],
        ["status", "--help"],
        ["detect", "--observer", "nonsense"],
    ],
)
def test_help_and_argument_errors_load_no_verb(argv: list[str]) -> None:
    code = (
        "from macula_nat.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "assert not [m for m in sys.modules if m.startswith('macula_nat.cli.') and m not in "
        "('macula_nat.cli.main', 'macula_nat.cli.parsers', 'macula_nat.cli.arguments')], "
        "sorted(sys.modules)"
    )
    assert loaded_after(code) == []


def test_parsing_a_verb_runs_nothing_and_loads_nothing_heavy() -> None:
    argv = ["gateway", "--listen", "203.0.113.1:3478", "--alt", "203.0.113.2:3479", "--web",
            "127.0.0.1:8080", "--bootstrap", "[2001:db8::1]:3481"]  # fmt: skip
    code = f"from macula_nat.cli import build_parser\nbuild_parser().parse_args({argv!r})"
    assert loaded_after(code) == []


def test_detect_loads_what_detection_needs_only() -> None:
    """A real run of the verb (against a port where nobody answers, so it fails fast)."""
    code = (
        "from macula_nat.cli import main\n"
        "try:\n"
        "    main(['detect', '--observer', '127.0.0.1:9', '--timeout', '0.2'])\n"
        "except SystemExit as exc:\n"
        "    assert 'macula-nat detect' in str(exc), exc\n"
        "assert 'macula_nat.cli.detect' in sys.modules"
    )
    assert [m for m in loaded_after(code) if m in NOT_FOR_DETECT] == []


def _verbs(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(commands.choices)


def test_every_verbs_handler_exists() -> None:
    verbs = _verbs(build_parser())
    assert set(verbs) == {"demo", "detect", "observe", "gateway", "listen", "connect", "status"}
    for name, parser in verbs.items():
        module, function = parser.get_default("handler").args
        assert callable(getattr(importlib.import_module(module), function)), name


@pytest.mark.parametrize("package", [macula_nat, macula_nat.net], ids=lambda p: p.__name__)
def test_every_lazily_exported_name_resolves(package: ModuleType) -> None:
    for name in package.__all__:
        namespace: dict[str, object] = {}
        exec(f"from {package.__name__} import {name}", namespace)
        assert namespace[name] is getattr(package, name) is not None
    assert set(package.__all__) <= set(dir(package))
