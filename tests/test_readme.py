"""The README's quick-start snippet runs as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_quickstart_runs():
    text = README.read_text()
    block = re.search(r"<!-- README-TEST-START -->\s*```python\n(.*?)```", text, re.S)
    assert block, "README quick-start block not found"
    exec(compile(block.group(1), "README.md", "exec"), {})


def test_readme_starts_with_the_two_setup_commands():
    lines = [ln for ln in README.read_text().splitlines() if ln.strip()]
    assert lines[2].startswith("make demo") and lines[3].startswith("make test")
