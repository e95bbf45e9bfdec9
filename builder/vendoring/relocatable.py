"""Whether a copied CPython finds its libraries inside itself: every ELF file's RPATH/RUNPATH
stays inside the tree and every NEEDED library the tree holds is reached through them. An
install whose RUNPATH names its own build directory runs only where that directory exists
(issue 17); such entries are rewritten to $ORIGIN with patchelf, else refused."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path

from builder.errors import OperationError, UserError
from builder.vendoring import elfdynamic

PATCHELF_HINT = "install patchelf (apt-get install patchelf) to have it rewritten to $ORIGIN"


@dataclasses.dataclass(frozen=True)
class Problem:
    rel: str      # the ELF file, relative to the tree
    field: str    # RPATH, RUNPATH or NEEDED
    entry: str
    why: str

    def error(self, prefix: str = "", hint: str = "") -> UserError:
        return UserError(f"{self.entry} {self.why}" + (f"; {hint}" if hint else ""),
                         file=prefix + self.rel, field=self.field)


def elf_files(root: Path) -> list[Path]:
    """The regular ELF files under root (symlinks are someone else's name for one of them)."""
    found = []
    for dirpath, _, filenames in os.walk(root):
        for name in sorted(filenames):
            path = Path(dirpath, name)
            if not path.is_symlink() and path.is_file() and elfdynamic.is_elf(path):
                found.append(path)
    return sorted(found)


def _expand(entry: str, origin: Path) -> str | None:
    """An entry as a path (None: it depends on where the process runs, or on $LIB/$PLATFORM)."""
    for token in ("${ORIGIN}", "$ORIGIN"):
        entry = entry.replace(token, str(origin))
    if "$" in entry or not os.path.isabs(entry):
        return None
    return os.path.normpath(entry)


def _inside(path: str, root: Path) -> bool:
    return path == str(root) or path.startswith(str(root) + os.sep)


def problems(root: Path) -> list[Problem]:
    """Every lookup of an ELF file under root that leaves root, or misses a library root has."""
    root = root.resolve()
    files = elf_files(root)
    held = {p.name for p in files} | {p.name for p in root.rglob("*.so*") if p.is_symlink()}
    found: list[Problem] = []
    for path in files:
        rel = path.relative_to(root).as_posix()
        try:
            dynamic = elfdynamic.read(path)
        except elfdynamic.NotElf as exc:
            found.append(Problem(rel, "ELF", "header", f"cannot be read: {exc}"))
            continue
        dirs = []
        for field, entries in (("RPATH", dynamic.rpath), ("RUNPATH", dynamic.runpath)):
            for entry in entries:
                where = _expand(entry, path.parent)
                if where is None or not _inside(where, root):
                    found.append(Problem(rel, field, entry, "points outside the bundle"))
                else:
                    dirs.append(Path(where))
        for name in dynamic.needed:
            if "/" in name:
                if not _inside(os.path.normpath(name), root):
                    found.append(Problem(rel, "NEEDED", name, "is a path outside the bundle"))
            elif name in held and not any((d / name).exists() for d in dirs):
                found.append(Problem(rel, "NEEDED", name, "is in the bundle but no RPATH/RUNPATH "
                                     "of this file leads to it (it would be looked up outside)"))
    return found


def make_relocatable(root: Path, original: Path, label: str) -> int:
    """Rewrite RPATH/RUNPATH entries naming the original install (where root was copied from)
    to $ORIGIN-relative ones; refuse any other escaping lookup. The number of files changed."""
    found = problems(root)
    if not found:
        return 0
    patchelf = shutil.which("patchelf")
    # The original as given and as resolved: an entry may name it either way.
    originals = {Path(os.path.abspath(original)), original.resolve()}
    fixable = [p for p in found if p.field in ("RPATH", "RUNPATH")
               and any(_inside(os.path.normpath(p.entry), o) for o in originals)]
    changed = sorted({p.rel for p in fixable})
    for p in found:
        # A NEEDED library missed through a RUNPATH about to be rewritten is checked after.
        if p not in fixable and not (p.field == "NEEDED" and p.rel in changed):
            raise p.error(f"{label}/")
        if patchelf is None:
            raise p.error(f"{label}/", PATCHELF_HINT)
    root_real = root.resolve()
    for rel in changed:
        path = root_real / rel
        dynamic = elfdynamic.read(path)
        field = "RPATH" if dynamic.rpath else "RUNPATH"
        new = [_rebase(e, path.parent, originals, root_real)
               for e in (dynamic.rpath or dynamic.runpath)]
        # --force-rpath keeps a DT_RPATH a DT_RPATH (it also applies to indirect dependencies).
        cmd = [patchelf, *(["--force-rpath"] if field == "RPATH" else []), "--set-rpath",
               ":".join(dict.fromkeys(new)), str(path)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise OperationError(f"patchelf failed on {label}/{rel} (exit status "
                                 f"{done.returncode}): {done.stderr.strip()}")
    left = problems(root)
    if left:
        raise left[0].error(f"{label}/", "still, after patchelf")
    return len(changed)


def _rebase(entry: str, origin: Path, originals: set[Path], root: Path) -> str:
    """An entry naming a directory of the original install, as $ORIGIN/... to the copy's."""
    where = _expand(entry, origin)
    original = next((o for o in originals if where and _inside(where, o)), None)
    if where is None or original is None:
        return entry
    inside = root / os.path.relpath(where, original)
    rel = os.path.relpath(inside, origin)
    return "$ORIGIN" if rel == "." else f"$ORIGIN/{rel}"
