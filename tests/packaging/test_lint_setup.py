"""mypy reads the package as it installs, and CI runs the lint gate.

tools/mypy_tree.py links the top-level folders into the parley_chat layout that
setuptools' package-dir makes (mypy can follow neither package-dir nor the
editable install's import hook): the real script builds a real tree here, and
every package the wheel ships must be in it, backed by the checkout's own files.
The configuration that ties it together (Makefile, pyproject.toml, .ci/run) is
checked for the pieces CI depends on.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_tree_holds_every_shipped_package_as_links_to_the_checkout(tmp_path: Path):
    tree = tmp_path / "tree"
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "mypy_tree.py"), str(tree)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    package_dir = PYPROJECT["tool"]["setuptools"]["package-dir"]
    for package in PYPROJECT["tool"]["setuptools"]["packages"]:
        init = tree.joinpath(*package.split("."), "__init__.py")
        assert init.is_file(), f"{package} is missing from the tree"
        # Where setuptools installs it from: the nearest mapped parent's folder.
        parts = package.split(".")
        for cut in range(len(parts), 0, -1):
            mapped = ".".join(parts[:cut])
            if mapped in package_dir:
                source = ROOT / package_dir[mapped] / Path(*parts[cut:]) / "__init__.py"
                break
        assert init.resolve() == source.resolve(), package
    # Building again replaces the old tree (a folder dropped from package-dir goes).
    stale = tree / "parley_chat" / "stale.py"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_text("")
    again = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "mypy_tree.py"), str(tree)], timeout=60
    )
    assert again.returncode == 0
    assert not stale.exists()


def test_mypy_reads_the_tree_the_lint_target_builds():
    mypy = PYPROJECT["tool"]["mypy"]
    makefile = (ROOT / "Makefile").read_text()
    tree = re.search(r"^MYPY_TREE\s*:=\s*(\S+)$", makefile, re.M)
    assert tree is not None
    assert mypy["mypy_path"] == tree.group(1)
    assert mypy["packages"][0] == "parley_chat"
    lint = makefile.split("\nlint:", 1)[1].split("\n\n", 1)[0]
    for step in ("ruff check .", "ruff format --check .", "tools/mypy_tree.py", "bin/mypy"):
        assert step in lint, f"make lint does not run {step}"


def test_the_store_and_the_protocol_are_checked_strictly():
    strict = [
        o for o in PYPROJECT["tool"]["mypy"]["overrides"] if "parley_chat.protocol.*" in o["module"]
    ]
    assert len(strict) == 1 and "parley_chat.server.store.*" in strict[0]["module"]
    for flag in ("disallow_untyped_defs", "disallow_any_generics", "warn_return_any"):
        assert strict[0][flag] is True


def test_ci_runs_the_lint_gate_and_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make lint$", ci, re.M)
    assert re.search(r"^make test\b", ci, re.M)
    assert "make test" in (ROOT / "README.md").read_text()


def test_mypy_and_its_stubs_are_pinned():
    pins = (ROOT / "requirements-dev.txt").read_text()
    for name in ("mypy", "types-tqdm"):
        assert re.search(rf"^{name}==\S+$", pins, re.M), f"{name} is not pinned"


def _ci_with_make(tmp_path: Path, lint_rc: int, test_rc: int) -> subprocess.CompletedProcess[str]:
    """Run the real .ci/run with a stand-in `make` on PATH that exits with the given codes
    (a fake for this one script: the real targets run the whole suite)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    make = bin_dir / "make"
    make.write_text(
        "#!/bin/sh\n"
        f'echo "make $*" >> "{tmp_path}/calls"\n'
        f'case "$1" in lint) exit {lint_rc};; test) exit {test_rc};; esac\n'
        "exit 99\n"
    )
    make.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}
    return subprocess.run(
        ["bash", str(ROOT / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=60
    )


def test_ci_fails_when_lint_fails_and_still_runs_the_tests(tmp_path: Path):
    done = _ci_with_make(tmp_path, lint_rc=2, test_rc=0)
    assert done.returncode == 2
    assert (tmp_path / "calls").read_text().splitlines() == [
        "make lint",
        "make test PYTEST_ARGS=-q -ra",
    ]


@pytest.mark.parametrize(
    ("lint_rc", "test_rc", "expected"),
    [(0, 0, 0), (0, 1, 1), (0, 5, 1), (1, 3, 3)],
    ids=["both-pass", "tests-fail", "no-tests-collected", "both-fail"],
)
def test_ci_passes_only_when_lint_and_tests_both_pass(
    tmp_path: Path, lint_rc: int, test_rc: int, expected: int
):
    assert _ci_with_make(tmp_path, lint_rc=lint_rc, test_rc=test_rc).returncode == expected
