"""The battery's index (README.md in this directory) stays true.

Every test it names exists, every battery test is in it, and every case of
reliability.md section 6 (#1-#29) has a row, if only to say "elsewhere".
"""

from __future__ import annotations

import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
_REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")


def _rows() -> list[list[str]]:
    lines = (HERE / "README.md").read_text().splitlines()
    return [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in lines
        if line.startswith("| ") and not line.startswith("| # ")
    ]


def test_every_test_the_index_names_exists():
    """Battery index: each `path::test` in README.md is a function in that file."""
    named = _REFERENCE.findall((HERE / "README.md").read_text())
    assert named
    for path, name in named:
        source = ROOT / path
        assert source.is_file(), path
        assert re.search(rf"^def {name}\(", source.read_text(), re.M), f"{path}::{name}"


def test_every_battery_test_is_in_the_index():
    """Battery index: no test in tests/battery is missing from README.md."""
    indexed = {name for path, name in _REFERENCE.findall((HERE / "README.md").read_text())}
    for module in HERE.glob("test_*.py"):
        if module.name == Path(__file__).name:
            continue
        for name in re.findall(r"^def (test_\w+)\(", module.read_text(), re.M):
            assert name in indexed, f"{module.name}::{name} is not in README.md"


def test_every_case_of_the_battery_table_has_a_row():
    """Battery index: cases #1-#29 each appear in the first column."""
    cases = {int(n) for row in _rows() for n in re.findall(r"\d+", row[0]) if row[0] != "-"}
    assert set(range(1, 30)) <= cases
