"""Bake timings per data-tier role through the real CLI: cold (empty apt cache), warm (a
caching apt proxy on the host, started here, already holding the packages), and the skip of
an unchanged image (goal: <= 2 s); plus the qcow2 size."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import click

from builder.bench.aptproxy import AptProxy
from builder.bench.common import Options, builder_command, table
from builder.errors import OperationError
from builder.project import copy_tree

DESCRIPTION = "cold / warm (apt cache proxy) / skip bake seconds and qcow2 size per role"
ROLES = ("haproxy", "redis", "etcd-patroni")
SKIP_GOAL_SECONDS = 2.0
# QEMU user networking maps this guest-side address to the host's loopback.
HOST_FROM_GUEST = "10.0.2.2"


def available() -> str | None:
    for tool in ("packer", "qemu-system-x86_64", "mmdebstrap"):
        if not shutil.which(tool):
            return f"{tool} is not installed (make setup)"
    return None


def _bake(root: Path, env: dict, role: str, *flags: str) -> tuple[float, dict]:
    started = time.monotonic()
    proc = subprocess.run(builder_command("bake", role, "--env", "bench.yaml", "--json", *flags),
                          cwd=root, env=env, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise OperationError(f"bench bake of {role} failed: {proc.stderr.strip()[-400:]}")
    return seconds, json.loads(proc.stdout)["bakes"][0]


def run(options: Options) -> dict:
    project = options.project
    rows, results = [], {}
    with tempfile.TemporaryDirectory(prefix="builder-bench-bake-") as tmp:
        root = Path(tmp) / "project"
        copy_tree(root, project.root)
        state = Path(tmp) / "state"
        state.mkdir()
        # The base is built (or reused) once; its own time is `builder base`'s business.
        shared_bases = project.state.resolve() / "bases"
        shared_bases.mkdir(parents=True, exist_ok=True)
        (state / "bases").symlink_to(shared_bases, target_is_directory=True)
        env = dict(os.environ, BUILDER_STATE=str(state))
        with AptProxy(Path(tmp) / "apt-cache") as cache:
            (root / "bench.yaml").write_text(
                "name: bench\n"
                f"mirrors:\n  apt_proxy: http://{HOST_FROM_GUEST}:{cache.port}\n")
            for role in ROLES:
                click.echo(f"bake {role}: cold (empty apt cache) ...")
                cold, first = _bake(root, env, role, "--force")
                click.echo(f"bake {role}: warm (apt cache filled) ...")
                misses = cache.server.misses
                warm, second = _bake(root, env, role, "--force")
                warm_misses = cache.server.misses - misses
                skip, third = _bake(root, env, role)
                if third["status"] != "up-to-date":
                    raise OperationError(f"{role}: unchanged bake was not skipped")
                size = Path(second["artifact"], f"{role}.qcow2").stat().st_size
                results[role] = {
                    "warm_apt_cache_misses": warm_misses,
                    "cold_seconds": round(cold, 1), "warm_seconds": round(warm, 1),
                    "skip_seconds": round(skip, 2), "qcow2_bytes": size,
                    "stages_cold": first.get("timings", {}),
                    "stages_warm": second.get("timings", {}),
                }
                rows.append((role, round(cold, 1), round(warm, 1), round(skip, 2),
                             round(size / 2**20, 1)))
    click.echo(table(("role", "cold s", "warm s", "skip s", "qcow2 MiB"), rows))
    worst_skip = max(r["skip_seconds"] for r in results.values())
    click.echo(f"skip of an unchanged image: worst {worst_skip:.2f} s "
               f"(goal <= {SKIP_GOAL_SECONDS} s)")
    return {"roles": results, "skip_goal_seconds": SKIP_GOAL_SECONDS,
            "goal_met": worst_skip <= SKIP_GOAL_SECONDS}
