"""The examples in README.md and supervision.md run as written.

Blocks fenced as ``python network`` need a real gateway and are not run here (the tests send
nothing beyond loopback); what they show is tested on the simulated internet.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = [
    (doc, index, block)
    for doc in ("README.md", "supervision.md")
    for index, block in enumerate(
        re.findall(r"```python\n(.*?)```", (ROOT / doc).read_text(), re.S)
    )
]


@pytest.mark.parametrize(("doc", "index", "code"), EXAMPLES, ids=lambda v: str(v)[:20])
def test_documented_example_runs(doc: str, index: int, code: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0, f"{doc} example {index} failed:\n{result.stderr}"
