"""The package root is the guide's API: every name importable, documented, and cheap to import."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import macula_nat

README = Path(__file__).parent.parent / "README.md"


def api_table() -> str:
    """The README's API table: the section that lists the root's names."""
    text = README.read_text()
    start = text.index("### Everything from `import macula_nat`")
    return text[start : text.index("\n### ", start + 1)]


@pytest.mark.parametrize("name", macula_nat.__all__)
def test_each_root_name_imports_and_is_in_the_readmes_api_table(name: str) -> None:
    value = getattr(macula_nat, name)
    assert value is not None
    namespace: dict[str, object] = {}
    exec(f"from macula_nat import {name}", namespace)
    assert namespace[name] is value
    assert re.search(rf"`{re.escape(name)}[`(.]", api_table()), f"{name} is not in the table"


def test_the_facades_are_the_guides_modules() -> None:
    for name in ("nat_detector", "nat_cache", "nat_system", "nat_coordinator", "nat_connector",
                 "relay_registry", "relay_node"):  # fmt: skip
        module = getattr(macula_nat, name)
        assert isinstance(module, ModuleType) and module.__name__ == f"macula_nat.erlang.{name}"


def test_star_import_dir_and_unknown_names() -> None:
    namespace: dict[str, object] = {}
    exec("from macula_nat import *", namespace)
    assert set(macula_nat.__all__) <= set(namespace)
    assert set(macula_nat.__all__) <= set(dir(macula_nat))
    with pytest.raises(AttributeError, match="no attribute 'open_nat_systm'"):
        macula_nat.open_nat_systm  # noqa: B018


def test_importing_the_root_loads_nothing_heavy() -> None:
    """``import macula_nat`` stays light (the command line's ``--help`` starts fast): the QUIC
    stack, Trio and the actors load on first use of a name that needs them."""
    code = (
        "import sys, macula_nat\n"
        "heavy = [m for m in ('aioquic', 'trio', 'cryptography', 'macula_nat.system') "
        "if m in sys.modules]\n"
        "print(heavy)\n"
        "macula_nat.NatConfig\n"
        "print('macula_nat.system' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split("\n")
    assert out[:2] == ["[]", "True"]
