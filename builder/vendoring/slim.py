"""What a copied CPython carries that a server never runs: the stdlib's own test suite, the
GUI (IDLE, Tk), the static build (config-3.X-*), and whatever the vendoring machine installed
into its site-packages (packages, .pth files that would run in every guest process).
ensurepip stays: the image makes its venv with `python -m venv`, which installs pip from it."""

from __future__ import annotations

import fnmatch
import shutil
from pathlib import Path

# Relative to lib/python3.X.
STDLIB_DROPPED = ("test", "idlelib", "tkinter", "turtledemo", "turtle.py", "lib2to3/tests",
                  "config-3.*")
# Extension modules of the dropped parts, and the test suite's own.
DYNLOAD_DROPPED = ("_tkinter.*", "_test*", "_xxtestfuzz*", "xxlimited*", "_ctypes_test*",
                   "xxsubtype*")
BIN_DROPPED = ("idle3*", "2to3*")
SITE_KEPT = ("README.txt",)


def slim(root: Path) -> list[str]:
    """Remove the parts above from the CPython at root; what was removed, relative to root."""
    removed: list[Path] = []
    for stdlib in sorted((root / "lib").glob("python3.*")):
        if not stdlib.is_dir() or stdlib.is_symlink():
            continue
        for pattern in STDLIB_DROPPED:
            removed += stdlib.glob(pattern)
        removed += _matching(stdlib / "lib-dynload", DYNLOAD_DROPPED)
        site = stdlib / "site-packages"
        if site.is_dir():
            removed += [p for p in site.iterdir() if p.name not in SITE_KEPT]
    removed += _matching(root / "bin", BIN_DROPPED)
    for path in removed:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    return sorted(p.relative_to(root).as_posix() for p in removed)


def _matching(directory: Path, patterns: tuple[str, ...]) -> list[Path]:
    if not directory.is_dir():
        return []
    return [p for p in directory.iterdir() if any(fnmatch.fnmatch(p.name, pat)
                                                  for pat in patterns)]
