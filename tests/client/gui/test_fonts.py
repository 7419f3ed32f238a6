"""client/gui/fonts.py: customtkinter's fonts are installed once, never rewritten."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from parley_chat.client.gui.fonts import copy_unless_same


def test_an_identical_file_is_left_alone_and_a_different_one_is_copied(tmp_path: Path) -> None:
    src = tmp_path / "Font.ttf"
    src.write_bytes(b"font bytes")
    dst = tmp_path / "fonts"
    dst.mkdir()
    copy_unless_same(str(src), str(dst))
    target = dst / "Font.ttf"
    assert target.read_bytes() == b"font bytes"
    before = target.stat()
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns - 10**9))  # older, to tell
    stamp = target.stat().st_mtime_ns
    copy_unless_same(str(src), str(dst))
    assert target.stat().st_mtime_ns == stamp and target.stat().st_ino == before.st_ino
    src.write_bytes(b"a new version")
    copy_unless_same(str(src), str(dst))
    assert target.read_bytes() == b"a new version"


def test_a_second_start_of_the_client_package_does_not_rewrite_the_fonts(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path)}
    env.pop("DISPLAY", None)  # importing needs no display
    code = "import parley_chat.client.gui"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
    fonts = sorted((tmp_path / ".fonts").iterdir())
    assert fonts, "the first import installs customtkinter's fonts"
    stamps = {}
    for f in fonts:
        st = f.stat()
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns - 10**9))
        stamps[f.name] = (f.stat().st_mtime_ns, st.st_ino)
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
    assert {f.name: (f.stat().st_mtime_ns, f.stat().st_ino) for f in fonts} == stamps
