"""What each CLI command does, composed from the one-job modules; returns plain data."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import click

from builder import render as rendering
from builder import spec as specs
from builder.errors import UserError
from builder.spec.project import find_project
from builder.vendoring import bundles


def _load(images: Path | None, roles, all_roles, target, env_name, samples: bool = False):
    """The project, the roles to work on, the environment, and the roles `--all` leaves out
    for want of their application bundle (named explicitly, such a role is an error). With
    `samples` (validate) none is left out: a sample bundle stands in."""
    project = find_project(images)
    loaded = specs.load_roles(project)
    chosen = specs.select_roles(loaded, roles, all_roles)
    specs.check_target(target)
    env = specs.load_environment(env_name, project, loaded)
    skipped = []
    if all_roles and not samples:
        vendor = project.display(bundles.vendor_dir(project))
        skipped = [{"role": r.role, "app": r.bundle.app, "vendor": vendor, "reason": why}
                   for r in chosen if (why := rendering.missing_bundle(r, project))]
        chosen = [r for r in chosen if r.role not in {s["role"] for s in skipped}]
    if not chosen:
        raise UserError("no role can be rendered: every one lacks its bundle", field="--all")
    return project, chosen, env, skipped


def list_roles(images: Path | None) -> dict:
    project = find_project(images)
    loaded = specs.load_roles(project)
    return {"roles": [{"role": s.role, "version": s.version, "description": s.description,
                       "targets": list(specs.TARGETS), "packages": s.package_names,
                       "ports": s.ports} for s in loaded.values()]}


def print_roles(data: dict) -> None:
    for r in data["roles"]:
        click.echo(f"{r['role']:<18} {r['version']:<8} {','.join(r['targets']):<10} "
                   f"{r['description']}")


def render(roles, all_roles, target, env_name, images, out) -> dict:
    started = time.monotonic()
    project, chosen, env, skipped = _load(images, roles, all_roles, target, env_name)
    out = out or project.root / "packer"
    results = rendering.render(chosen, target, env, project, out)
    return {"target": target, "environment": env.name, "skipped": skipped,
            "seconds": round(time.monotonic() - started, 3),
            "rendered": [r.as_json() for r in results]}


def print_skipped(report: dict) -> None:
    """One line for every role `--all` left out for want of its bundle."""
    skipped = report.get("skipped") or []
    if skipped:
        click.echo(f"skipped {', '.join(s['role'] for s in skipped)}: no "
                   f"{'/'.join(s['app'] for s in skipped)} bundle in {skipped[0]['vendor']}/ "
                   "(make them with `builder vendor APP --version V` on a machine with "
                   "internet; docs/bundles.md)")


def print_rendered(data: dict) -> None:
    print_skipped(data)
    for r in data["rendered"]:
        click.echo(f"{r['role']:<18} {r['content_key'][:16]}  {r['directory']}")


def validate(roles, all_roles, target, env_name, images, cache: bool = True) -> dict:
    from builder.gate import boottemplates
    from builder.gate import validate as gate

    started = time.monotonic()
    project, chosen, env, skipped = _load(images, roles, all_roles, target, env_name,
                                          samples=True)
    samples = {r.role for r in chosen if rendering.missing_bundle(r, project)}
    with tempfile.TemporaryDirectory(prefix="builder-validate-") as scratch:
        results = rendering.render(chosen, target, env, project, Path(scratch) / "out",
                                   samples=Path(scratch) / "samples")
        for item in results:
            boottemplates.render(item, project, item.directory / gate.BOOT)
        checks = gate.run(results, project, cache)
    failed = [c for c in checks if not c.ok]
    # A check that could not run (its tool is missing here) proves nothing: the gate passes
    # only when every check ran and passed.
    unchecked = [c for c in checks if c.skipped]
    return {"ok": not failed and not unchecked, "target": target, "environment": env.name,
            "skipped": skipped,
            "unchecked": [f"{c.role} {c.name}: {c.detail}" for c in unchecked],
            "seconds": round(time.monotonic() - started, 3),
            "roles": [r.role.role for r in results], "samples": sorted(samples),
            # A sample bundle's key names no image that could be baked.
            "content_keys": {r.role.role: r.content_key for r in results
                             if r.role.role not in samples},
            "checks": [c.as_json() for c in checks]}


def print_validation(report: dict) -> None:
    print_skipped(report)
    for c in report["checks"]:
        mark = "skip" if c["skipped"] else ("ok" if c["ok"] else "FAIL")
        click.echo(f"{mark:<5} {c['role']:<18} {c['name']:<18} {c['detail']}")
    total = len(report["checks"])
    failed = sum(1 for c in report["checks"] if not c["ok"])
    unchecked = report.get("unchecked") or []
    passed = total - failed - len(unchecked)
    click.echo(f"{report['target']}: {passed}/{total} checks passed in {report['seconds']} s"
               + (f", {failed} failed" if failed else "")
               + (f", {len(unchecked)} could not run" if unchecked else ""))
    if unchecked:
        click.echo("not checked (install what is missing, e.g. `make setup`): "
                   + "; ".join(unchecked))
    if report.get("samples"):
        click.echo(f"checked with a sample bundle (none in vendor/): "
                   f"{', '.join(report['samples'])}; baking them needs the real bundles "
                   "(`builder vendor APP --version V`; docs/bundles.md)")


def base(suite: str, force: bool) -> dict:
    from builder.bake import base as bases
    from builder.progress import Progress

    project = find_project()
    found = bases.ensure(project.state.resolve(), specs.BaseImage(suite=suite), Progress(),
                         force=force)
    return {"identity": found.identity, "image": found.image, "checksum": found.checksum}


def bake(roles, all_roles, target, env_name, images, force, parallel,
         layers: bool = True) -> dict:
    from builder.bake import orchestrate as baking

    project, chosen, env, skipped = _load(images, roles, all_roles, target, env_name)
    return baking.bake(chosen, target, env, project, force, parallel,
                       layers=layers) | {"skipped": skipped}


def print_bakes(report: dict) -> None:
    print_skipped(report)
    for b in report["bakes"]:
        detail = b.get("artifact") or b.get("error") or ""
        click.echo(f"{b['role']:<18} {b['status']:<11} {b['seconds']:>7.1f}s  {detail}")
