"""`builder vendor verify` on a bundle's own CPython: unpacked to a fresh directory, its ELF
lookups must stay inside it, and run from there it must load its libraries from there. A
check of the vendoring tree passes while the original install still exists (issue 17); a
fresh directory and the process's own memory map do not."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
import tempfile
from pathlib import Path

from builder.errors import UserError
from builder.vendoring import relocatable
from builder.vendoring.bundles import Bundle

# The interpreter's prefix and every file it has mapped (the shared libraries it loaded).
_PROBE = ("import json, sys\n"
          "maps = sorted({l.split(None, 5)[5].strip() for l in open('/proc/self/maps') "
          "if len(l.split(None, 5)) == 6 and l.split(None, 5)[5].startswith('/')})\n"
          "print(json.dumps({'prefix': sys.prefix, 'mapped': maps}))")


def check(bundle: Bundle) -> None:
    """UserError (naming the bundle and the member) unless the bundled python is relocatable;
    nothing to check for a bundle without one."""
    if bundle.manifest.get("runtime", {}).get("python") != "bundled":
        return
    with tempfile.TemporaryDirectory(prefix="builder-verify-") as scratch:
        with tarfile.open(bundle.path, mode="r:gz") as tar:
            members = [m for m in tar.getmembers()
                       if m.name.startswith(f"{bundle.top}/python/")]
            tar.extractall(scratch, members=members, filter="data")
        root = Path(scratch, bundle.top, "python").resolve()
        where = f"{bundle.top}/python/"
        for problem in relocatable.problems(root):
            raise UserError(f"{problem.entry} {problem.why}", file=str(bundle.path),
                            field=f"{where}{problem.rel} {problem.field}")
        _run_from(root, bundle, where)


def _run_from(root: Path, bundle: Bundle, where: str) -> None:
    python = root / "bin" / "python3"
    field = f"{where}bin/python3"
    # Nothing from this shell may help it find libraries: that would hide the bug.
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_LIBRARY_PATH", "LD_PRELOAD", "PYTHONHOME", "PYTHONPATH")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    try:
        done = subprocess.run([str(python), "-I", "-B", "-c", _PROBE], capture_output=True,
                              text=True, env=env, cwd=root, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UserError(f"does not run unpacked: {exc}", file=str(bundle.path),
                        field=field) from exc
    lines = done.stderr.strip().splitlines()
    if done.returncode != 0:
        raise UserError(f"does not run unpacked: {lines[-1] if lines else done.returncode}",
                        file=str(bundle.path), field=field)
    try:
        info = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        raise UserError(f"unpacked, it printed no prefix: {done.stdout[:200]!r}",
                        file=str(bundle.path), field=field) from exc
    if os.path.realpath(info.get("prefix", "")) != str(root):
        raise UserError(f"unpacked, its prefix is {info.get('prefix')}, not where it runs",
                        file=str(bundle.path), field=field)
    held = {p.name for p in relocatable.elf_files(root)}
    for mapped in info.get("mapped", []):
        if os.path.basename(mapped) in held and not mapped.startswith(str(root) + os.sep):
            raise UserError(f"unpacked, it loaded {mapped} from outside the bundle",
                            file=str(bundle.path), field=field)
