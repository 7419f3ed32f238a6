"""The desktop client as one file: the script PyInstaller freezes, and the build itself.

`python -m parley_chat.onefile --build [DIR]`, run with the wheel and PyInstaller
installed in one venv (make onefile does it), freezes this file into DIR (default
dist): `parley` (`parley.exe` on Windows), one executable that needs no Python; on
macOS a `parley.app` bundle instead (PyInstaller is retiring one-file apps there).
The frozen program runs this same file as a plain script, not as a module of a
package, so it imports the desktop client absolutely and calls its main().

Run it from an installed copy, not from a checkout: there PyInstaller would take the
checkout's parley_chat folder, which holds none of the mapped packages.
"""

from __future__ import annotations

import sys
import tempfile

from parley_chat.client.gui.__main__ import main


def build(dist: str = "dist") -> int:
    """Freeze the desktop client into *dist*; PyInstaller's exit code (0 on success)."""
    from PyInstaller.__main__ import run  # only the build needs PyInstaller

    bundle = ["--onedir", "--windowed"] if sys.platform == "darwin" else ["--onefile", "--windowed"]
    with tempfile.TemporaryDirectory(prefix="parley-onefile-") as work:
        run(
            [
                *bundle,
                "--name",
                "parley",
                "--noconfirm",
                # customtkinter's themes and fonts are data files, not imports.
                "--collect-data",
                "customtkinter",
                "--distpath",
                dist,
                "--workpath",
                work,
                "--specpath",
                work,
                __file__,
            ]
        )
    return 0


if __name__ == "__main__":
    if not getattr(sys, "frozen", False) and sys.argv[1:2] == ["--build"]:
        sys.exit(build(*sys.argv[2:3]))
    sys.exit(main())
