"""Building a Node application from a checkout: node version check, the pnpm its
package.json names (run through npx), and a clean working copy."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from builder.errors import OperationError
from builder.progress import Progress
from builder.vendoring import common
from builder.vendoring.common import Source, step

NODE_MAJOR = 24  # what the dashboard and the storefront declare in package.json engines
BUILD_OUTPUTS = ("node_modules", "build", ".next", "dist")


def check_node(app: str, built: str) -> None:
    """node >= NODE_MAJOR on PATH, or OperationError saying what to do instead."""
    try:
        found = subprocess.run(["node", "--version"], capture_output=True, text=True,
                               timeout=30, check=False).stdout.strip()
    except OSError:
        found = ""
    match = re.match(r"v(\d+)", found)
    if not match or int(match.group(1)) < NODE_MAJOR:
        raise OperationError(f"building the {app} from a checkout needs node {NODE_MAJOR} or "
                             f"newer on PATH (found {found or 'none'}); or pass {built} as "
                             "--source")


def pnpm(root: Path, default: str) -> list[str]:
    """The pnpm of package.json's packageManager (pnpm@X.Y.Z+sha…), else pnpm@default, run
    with npx (so only the npm registry is needed)."""
    version = default
    try:
        manager = json.loads((root / "package.json").read_text()).get("packageManager", "")
    except (OSError, ValueError):
        manager = ""
    match = re.fullmatch(r"pnpm@([0-9][0-9A-Za-z.-]*)(\+.*)?", manager or "")
    if match:
        version = match.group(1)
    return ["npx", "--yes", f"pnpm@{version}"]


def checkout(src: Source, work: Path, progress: Progress) -> Path:
    """A working copy of the checkout without earlier installs and build outputs (the
    source directory given is never written to)."""
    dest = work / "checkout"
    with step(progress, "checkout", "copying the source tree"):
        common.copy_tree(src.root, dest, ignore=common.IGNORED + BUILD_OUTPUTS)
    return dest


def build_env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ, CI="1", NEXT_TELEMETRY_DISABLED="1")
    env.update(extra)
    return env


def run_steps(steps: list[tuple[str, list[str]]], cwd: Path, env: dict,
              progress: Progress) -> None:
    for name, cmd in steps:
        with step(progress, name, " ".join(cmd[2:] if cmd[:2] == ["npx", "--yes"] else cmd)):
            common.run(cmd, what=name, progress=progress, cwd=cwd, env=env)
