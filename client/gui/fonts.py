"""customtkinter's import, without rewriting the fonts it installs.

On Linux customtkinter copies its fonts into ~/.fonts at every import, and
shutil.copy truncates the file before writing it again: any other process
that has the font mapped (a second parley window, another customtkinter
program, a parallel test worker) then dies of SIGBUS in its next Tk call. This
module imports customtkinter once with that copy skipped where an identical
file is already there; the first import on a machine still installs them.
"""

from __future__ import annotations

import filecmp
import os
import shutil
from collections.abc import Callable
from typing import Any


def copy_unless_same(src: Any, dst: Any, copy: Callable[..., Any] = shutil.copy) -> Any:
    """shutil.copy(src, dst), unless the target already holds the same bytes."""
    target = os.path.join(dst, os.path.basename(src)) if os.path.isdir(dst) else dst
    if os.path.isfile(target) and filecmp.cmp(src, target, shallow=False):
        return target
    return copy(src, dst)


def import_customtkinter() -> None:
    """Import customtkinter (if installed), skipping its copy of identical font files."""
    copy = shutil.copy
    shutil.copy = lambda src, dst, *args, **kwargs: copy_unless_same(src, dst, copy)
    try:
        import customtkinter  # noqa: F401
    except ImportError:  # the GUI extra is not installed; the package's modules say so
        pass
    finally:
        shutil.copy = copy
