"""How long the static gate takes: `builder render` + `builder validate` of every role, per
target, through the real CLI (interpreter start-up included: that is what a user waits for).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import click

from builder import spec as specs
from builder.bake import packer
from builder.bench.common import Options, run_cli, stats, table
from builder.errors import OperationError
from builder.progress import Progress

DESCRIPTION = "render + validate of all roles, per target (goal: under 3 s per target)"
GOAL_SECONDS = 3.0
# `validate` as a user runs it again (packer validate's passes remembered, gate/passcache.py)
# and with --no-cache, every check run: the goal is judged on the first, both are reported.
STEPS = ("render", "validate", "validate_uncached")
TOTALS = {"total": ("render", "validate"), "total_uncached": ("render", "validate_uncached")}


def available() -> str | None:
    return None  # without packer or cloud-init the gate still runs (those checks skip)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _step(args: list[str], cwd: Path) -> tuple[float, float, dict]:
    """Wall and CPU seconds of one CLI run (CPU of it and every process it started: on a
    busy machine wall time varies, CPU time much less)."""
    cpu = _children_cpu()
    started = time.perf_counter()
    proc = run_cli(args, cwd)
    took = time.perf_counter() - started
    cpu = _children_cpu() - cpu
    if proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise OperationError(f"`builder {' '.join(args)}` exited {proc.returncode}: "
                             + (detail[-1] if detail else "no output"))
    return took, cpu, json.loads(proc.stdout)


def _one_run(target: str, root: Path, out: Path) -> dict:
    """One render and one validate of every role for target: seconds of each, and the gate's
    own report (to prove it passed and to count skipped checks)."""
    shutil.rmtree(out, ignore_errors=True)
    render_s, render_cpu, _ = _step(
        ["render", "--all", "--target", target, "--out", str(out), "--json"], root)
    result = {"render": render_s, "cpu": {"render": render_cpu}}
    for step, extra in (("validate_uncached", ["--no-cache"]), ("validate", [])):
        seconds, cpu, report = _step(
            ["validate", "--all", "--target", target, "--json", *extra], root)
        if not report.get("ok"):
            failed = [f"{c['role']}/{c['name']}" for c in report["checks"] if not c["ok"]]
            raise OperationError(f"validate --target {target} failed: {', '.join(failed)}")
        result[step], result["cpu"][step], result["report"] = seconds, cpu, report
    for total, steps in TOTALS.items():
        result[total] = sum(result[s] for s in steps)
        result["cpu"][total] = sum(result["cpu"][s] for s in steps)
    return result


def run(options: Options) -> dict:
    root = options.project.root
    progress = Progress(prefix="bench render: ")
    roles = list(specs.load_roles(options.project))
    samples: dict[str, dict[str, list[float]]] = {
        t: {step: [] for step in (*STEPS, *TOTALS)} for t in specs.TARGETS}
    cpu: dict[str, dict[str, list[float]]] = {
        t: {step: [] for step in (*STEPS, *TOTALS)} for t in specs.TARGETS}
    totals: list[float] = []
    skipped: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="builder-bench-") as scratch:
        out = Path(scratch) / "out"
        for rep in range(options.warmup + options.repeat):
            measured = rep >= options.warmup
            label = f"run {rep - options.warmup + 1}/{options.repeat}" if measured \
                else f"warm-up {rep + 1}/{options.warmup}"
            run_total = 0.0
            for target in specs.TARGETS:
                result = _one_run(target, root, out)
                total = result["total"]
                progress.say(f"{label} {target}: render {result['render']:.2f} s, "
                             f"validate {result['validate']:.2f} s (uncached "
                             f"{result['validate_uncached']:.2f} s)")
                if measured:
                    for step in (*STEPS, *TOTALS):
                        samples[target][step].append(result[step])
                    for step, seconds in result["cpu"].items():
                        cpu[target][step].append(seconds)
                    run_total += total
                    skipped[target] = sorted({f"{c['name']} ({c['detail']})"
                                              for c in result["report"]["checks"]
                                              if c["skipped"]})
            if measured:
                totals.append(run_total)

    targets = {}
    for target, by_step in samples.items():
        entry = {step: stats(values) for step, values in by_step.items()}
        entry["cpu"] = {step: stats(values) for step, values in cpu[target].items()}
        entry["goal_met"] = entry["total"]["median"] <= GOAL_SECONDS
        entry["skipped_checks"] = skipped.get(target, [])
        targets[target] = entry
    data = {
        "goal_seconds": GOAL_SECONDS,
        "goal": "median of render + validate (all roles, one target) at most goal_seconds; "
                "total_uncached (validate --no-cache) is reported beside it",
        "repeat": options.repeat, "warmup": options.warmup, "roles": roles,
        "packer": packer.version_string(packer.version()) if packer.version() else None,
        "cloud_init": shutil.which("cloud-init") is not None,
        "targets": targets, "total": stats(totals),
        "goal_met": all(t["goal_met"] for t in targets.values()),
    }
    _print(data)
    return data


def _print(data: dict) -> None:
    rows = []
    for target, entry in data["targets"].items():
        for step in (*STEPS, *TOTALS):
            s = entry[step]
            verdict = ("ok" if entry["goal_met"] else "MISSED") if step == "total" else ""
            rows.append([target, step, s["median"], s["min"], s["max"],
                         entry["cpu"][step]["median"], verdict])
    s = data["total"]
    rows.append(["all", "total", s["median"], s["min"], s["max"], "", ""])
    click.echo(f"render: {len(data['roles'])} roles, {data['repeat']} runs after "
               f"{data['warmup']} warm-up; goal: render + validate <= "
               f"{data['goal_seconds']:.1f} s per target (median)")
    click.echo(table(["target", "step", "median s", "min s", "max s", "cpu s", "goal"], rows))
    click.echo(f"(wall seconds; cpu s: median CPU of the command and its children. "
               f"load average at the end: {', '.join(map(str, os.getloadavg()))})")
    for target, entry in data["targets"].items():
        if entry["skipped_checks"]:
            click.echo(f"note: {target} skipped {', '.join(entry['skipped_checks'])}")
