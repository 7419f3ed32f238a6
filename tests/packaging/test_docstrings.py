"""Every module says what it is in a docstring, so `help()` and `pydoc` show it.

A header written as `#` comments is invisible to both. The walk goes over every package
pyproject.toml installs under parley_chat (wherever its folder is: package-dir maps them),
plus bench/, which is not installed but is read the same way. Files are parsed, not
imported, so no module's import-time work runs here.
"""

from __future__ import annotations

import ast
import importlib.util
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _installed_packages() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages: list[str] = config["tool"]["setuptools"]["packages"]
    return packages


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in _installed_packages():
        spec = importlib.util.find_spec(package)
        assert spec is not None and spec.submodule_search_locations, package
        for folder in spec.submodule_search_locations:
            for path in sorted(Path(folder).glob("*.py")):
                name = package if path.stem == "__init__" else f"{package}.{path.stem}"
                found[name] = path
    for path in sorted((ROOT / "bench").glob("*.py")):
        found[f"bench.{path.stem}"] = path
    return found


def test_every_module_under_parley_chat_has_a_module_docstring() -> None:
    modules = _modules()
    # The walk found the project (and the folders package-dir maps, not only parley_chat/).
    assert len(modules) > 80
    assert "parley_chat.server.hub" in modules and "parley_chat.migrations.env" in modules
    missing = [
        f"{name} ({path.relative_to(ROOT)})"
        for name, path in modules.items()
        if not ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    ]
    assert missing == [], "modules whose header is not a docstring:\n" + "\n".join(missing)
