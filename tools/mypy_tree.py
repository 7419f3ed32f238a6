"""Build the tree mypy reads the package from: parley_chat/ as it installs.

The folders stay at the top of the repository and setuptools maps each under
the parley_chat namespace (pyproject.toml, [tool.setuptools.package-dir]), so
on disk there is no parley_chat/server for mypy to find, and the editable
install's import hook is nothing mypy can follow. This script makes that
layout out of symbolic links (build/mypy/parley_chat/server -> ../../../server,
...) from the same package-dir table, so it can never disagree with the
package; `mypy_path` in [tool.mypy] points at it and `make lint` rebuilds it
before each run (new folders in package-dir appear on their own).

Usage: python tools/mypy_tree.py [TREE]   (default: build/mypy)
"""

from __future__ import annotations

import os
import shutil
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def package_dirs(pyproject: Path) -> dict[str, Path]:
    """Dotted package name -> its folder, from pyproject.toml's package-dir table."""
    table = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-dir"]
    return {name: ROOT / folder for name, folder in table.items()}


def build(tree: Path, mapping: dict[str, Path]) -> None:
    """Make *tree* hold each mapped package, as links to the real folders and files."""
    if tree.exists():
        shutil.rmtree(tree)
    # Shallow names first: a package that has mapped subpackages becomes a real
    # folder of links to its own files, its subpackages linked in beside them.
    names = sorted(mapping, key=lambda n: n.count("."))
    for name in names:
        target = tree.joinpath(*name.split("."))
        source = mapping[name]
        nested = any(other.startswith(name + ".") for other in names)
        if not nested:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(os.path.relpath(source, target.parent), target_is_directory=True)
            continue
        target.mkdir(parents=True, exist_ok=True)
        for child in sorted(source.iterdir()):
            if child.name == "__pycache__" or f"{name}.{child.name}" in mapping:
                continue
            (target / child.name).symlink_to(os.path.relpath(child, target))


def main(argv: list[str]) -> int:
    """Build the tree at argv[0] (default build/mypy)."""
    tree = Path(argv[0]) if argv else ROOT / "build" / "mypy"
    build(tree.resolve(), package_dirs(ROOT / "pyproject.toml"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
