"""Bake timings per data-tier role through the real CLI, all in one run on an empty layer
cache and an empty apt cache (a caching apt proxy on the host, started here):
- layered cold: the role's package layer built (its time reported on its own), then the bake;
- template-only re-bake: a role template changed, the layer reused;
- --no-layer cold (apt in the bake VM, the proxy's cache empty for it) and warm (filled);
- the skip of an unchanged image (goal: <= 2 s); plus the qcow2 size.
Ratios are layered/--no-layer and re-bake/layered cold, measured in the same run. Roles:
BUILDER_BENCH_BAKE_ROLES (comma-separated; all three by default)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import click
import yaml

from builder.bench.aptproxy import AptProxy
from builder.bench.common import Options, builder_command, table
from builder.errors import OperationError, UserError
from builder.spec.project import copy_tree

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


ROLES_VAR = "BUILDER_BENCH_BAKE_ROLES"
# Goals of the package-layer work (issue: cheaper proof), seconds on an idle 2-core TCG host.
LAYERED_GOALS = {"etcd-patroni": 110.0, "haproxy": 60.0, "redis": 60.0}
RATIO_GOAL = 0.5


def _roles() -> tuple[str, ...]:
    chosen = tuple(r for r in os.environ.get(ROLES_VAR, ",".join(ROLES)).split(",") if r)
    if not chosen or not set(chosen) <= set(ROLES):
        raise UserError(f"{ROLES_VAR}: roles are {', '.join(ROLES)}", field=ROLES_VAR)
    return chosen


def _touch_template(root: Path, role: str) -> None:
    """A template-only change: one role template gains a comment line."""
    spec = yaml.safe_load((root / "images" / f"{role}.yaml").read_text())
    template = root / "templates" / role / spec["templates"][0]
    template.write_text(template.read_text() + "{# bench: a template-only change #}\n")


def run(options: Options) -> dict:
    project = options.project
    roles = _roles()
    rows, results = [], {}
    with tempfile.TemporaryDirectory(prefix="builder-bench-bake-") as tmp:
        root = Path(tmp) / "project"
        copy_tree(root, project.root)
        state = Path(tmp) / "state"
        state.mkdir()
        # The base is built (or reused) once; its own time is `builder base`'s business.
        # Layers start empty: building them is part of what is measured.
        shared_bases = project.state.resolve() / "bases"
        shared_bases.mkdir(parents=True, exist_ok=True)
        (state / "bases").symlink_to(shared_bases, target_is_directory=True)
        env = dict(os.environ, BUILDER_STATE=str(state))
        with AptProxy(Path(tmp) / "apt-cache") as cache:
            (root / "bench.yaml").write_text(
                "name: bench\n"
                f"mirrors:\n  apt_proxy: http://{HOST_FROM_GUEST}:{cache.port}\n")
            for role in roles:
                click.echo(f"bake {role}: layered, empty layer cache ...")
                layered, first = _bake(root, env, role, "--force")
                layer_seconds = _layer_seconds(first)
                click.echo(f"bake {role}: template-only change (layer reused) ...")
                _touch_template(root, role)
                rebake, _ = _bake(root, env, role)
                click.echo(f"bake {role}: --no-layer, apt cache empty ...")
                bare, _ = _bake(root, env, role, "--force", "--no-layer")
                click.echo(f"bake {role}: --no-layer, apt cache filled ...")
                misses = cache.server.misses
                warm, second = _bake(root, env, role, "--force", "--no-layer")
                warm_misses = cache.server.misses - misses
                skip, third = _bake(root, env, role)
                if third["status"] != "up-to-date":
                    raise OperationError(f"{role}: unchanged bake was not skipped")
                size = Path(first["artifact"], f"{role}.qcow2").stat().st_size
                results[role] = {
                    "layered_seconds": round(layered, 1),
                    "layer_build_seconds": layer_seconds,
                    "layered_bake_seconds": round(layered - layer_seconds, 1),
                    "rebake_template_only_seconds": round(rebake, 1),
                    "no_layer_cold_seconds": round(bare, 1),
                    "no_layer_warm_seconds": round(warm, 1),
                    "warm_apt_cache_misses": warm_misses,
                    "ratio_layered_to_no_layer": round(layered / bare, 3),
                    "ratio_rebake_to_layered": round(rebake / layered, 3),
                    "skip_seconds": round(skip, 2), "qcow2_bytes": size,
                    "goal_layered_seconds": LAYERED_GOALS[role],
                    "stages_layered": first.get("timings", {}),
                    "stages_no_layer_warm": second.get("timings", {}),
                }
                rows.append((role, round(layered, 1), layer_seconds, round(rebake, 1),
                             round(bare, 1), round(warm, 1), round(layered / bare, 2),
                             round(skip, 2), round(size / 2**20, 1)))
    click.echo(table(("role", "layered s", "layer s", "rebake s", "no-layer s",
                      "no-layer warm s", "ratio", "skip s", "qcow2 MiB"), rows))
    worst_skip = max(r["skip_seconds"] for r in results.values())
    click.echo(f"skip of an unchanged image: worst {worst_skip:.2f} s "
               f"(goal <= {SKIP_GOAL_SECONDS} s)")
    goals = {role: {"layered": r["layered_seconds"] <= r["goal_layered_seconds"],
                    "rebake_ratio": r["ratio_rebake_to_layered"] <= RATIO_GOAL,
                    "layer_ratio": r["ratio_layered_to_no_layer"] <= RATIO_GOAL}
             for role, r in results.items()}
    for role, met in goals.items():
        click.echo(f"{role}: " + ", ".join(f"{k} {'met' if v else 'NOT met'}"
                                           for k, v in met.items()))
    return {"roles": results, "skip_goal_seconds": SKIP_GOAL_SECONDS,
            "ratio_goal": RATIO_GOAL, "goals": goals,
            "goal_met": worst_skip <= SKIP_GOAL_SECONDS}


def _layer_seconds(bake: dict) -> float:
    """How long the bake spent making its layer (the debootstrap and filesystem stages)."""
    timings = bake.get("timings", {})
    return round(timings.get("debootstrap", 0.0) + timings.get("filesystem", 0.0), 1)
