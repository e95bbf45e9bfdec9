"""Passed `packer validate` runs, remembered by everything that decides their outcome.

Six of them are most of the gate's cost (each is eight Go processes: ~2.6 s of CPU for six
roles on this machine). Their outcome depends only on the Packer binary, the target, the
rendered role (its content key covers every rendered file Packer reads, the HCL itself is
hashed too) and the sample variables (with the run's scratch directory left out): when all
of those (and any external plugin binaries, for a Packer that loads them) are the same as in
a run that passed, the run would pass again. Only passes are kept, so a failure is always
Packer's own words from a fresh run."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

FORMAT = 1


def _plugins() -> list:
    """Packer >= 1.7 loads external plugins from these directories: each binary's identity."""
    home = Path.home()
    dirs = [*filter(None, os.environ.get("PACKER_PLUGIN_PATH", "").split(os.pathsep)),
            home / ".packer.d" / "plugins", home / ".config" / "packer" / "plugins"]
    found = []
    for directory in map(Path, dirs):
        if directory.is_dir():
            for path in sorted(p for p in directory.rglob("*") if p.is_file()):
                stat = path.stat()
                found.append([str(path), stat.st_size, stat.st_mtime_ns])
    return found


class Cache:
    """One gate run's view of the remembered passes: the Packer binary and its plugins are
    read once, every role's key adds its own inputs."""

    def __init__(self, directory: Path, packer: str):
        self.directory = directory
        exe = Path(packer).resolve()
        stat = exe.stat()
        self._tool = {"format": FORMAT, "packer": [str(exe), stat.st_size, stat.st_mtime_ns],
                      "plugins": _plugins()}

    def key(self, target: str, hcl: Path, content_key: str, args: list[str],
            scratch: Path) -> str:
        identity = {**self._tool, "target": target, "content_key": content_key,
                    "hcl": hashlib.sha256(hcl.read_bytes()).hexdigest(),
                    "args": [a.replace(str(scratch), "<scratch>") for a in args]}
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()

    def passed(self, digest: str) -> bool:
        return (self.directory / digest).is_file()

    def remember(self, digest: str, detail: str) -> None:
        """Best effort: a cache that cannot be written costs the next run its speed, no
        more."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = self.directory / f".{digest}.{os.getpid()}"
            tmp.write_text(detail + "\n")
            tmp.replace(self.directory / digest)
        except OSError:
            pass
