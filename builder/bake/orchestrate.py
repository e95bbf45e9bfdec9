"""Bake roles: render, skip what is up to date, bake the rest (fail-fast in parallel),
record what passed. Interrupting cleans up every VM and temporary file."""

from __future__ import annotations

import concurrent.futures
import signal
import subprocess
import threading
import time
from pathlib import Path

from builder.bake import accel as accelerators
from builder.bake import base as bases
from builder.bake import inspect, layer, packer, packerrun
from builder.errors import OperationError, UserError
from builder.progress import Progress
from builder.registry import Artifact, Registry
from builder.render import Rendered, render
from builder.spec import Environment, RoleSpec
from builder.spec.project import Project


def git_sha(root: Path) -> str:
    try:
        proc = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                              capture_output=True, text=True, check=False, timeout=10)
    except OSError:
        return "unknown"
    sha = proc.stdout.strip()
    if proc.returncode != 0 or not sha:
        return "unknown"
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain"],
                           capture_output=True, text=True, check=False).stdout.strip()
    return sha + ("-dirty" if dirty else "")


def registry_for(project: Project) -> Registry:
    return Registry(project.state.resolve() / "registry.db")


def _terminate_on_sigterm() -> None:
    """SIGTERM (a CI timeout, systemd) cleans up exactly like Ctrl-C."""
    if threading.current_thread() is threading.main_thread():
        def handler(signum, frame):
            raise KeyboardInterrupt
        signal.signal(signal.SIGTERM, handler)


def bake(roles: list[RoleSpec], target: str, env: Environment, project: Project,
         force: bool, parallel: int, out: Path | None = None, layers: bool = True) -> dict:
    started = time.monotonic()
    _terminate_on_sigterm()
    state = project.state.resolve()
    rendered = render(roles, target, env, project, out or project.root / "packer",
                      layers=layers)
    # Refusals first, before anything is written to the state directory (the registry).
    if force and target == "qemu":
        _refuse_replacing_in_use(rendered, state)
    if target == "qemu" and not packer.binary():
        raise UserError("packer is not installed (run `make setup`)", field="--target")
    registry = registry_for(project)
    results: dict[str, dict] = {}
    todo: list[Rendered] = []
    for item in rendered:
        found = None if force else registry.find_tested(item.role.role, target, item.content_key)
        if found:
            results[item.role.role] = {"role": item.role.role, "status": "up-to-date",
                                       "content_key": item.content_key,
                                       "artifact": found.artifact, "seconds": 0.0}
            Progress(f"{item.role.role}: ").say(f"up to date ({found.artifact})")
        else:
            todo.append(item)
    if todo:
        sha = git_sha(project.root)
        if target == "qemu":
            results.update(_bake_qemu(todo, env, project, state, registry, sha, parallel,
                                      layers))
        else:
            from builder.bake.targets import aws

            results.update(aws.bake_all(todo, env, project, state, registry, sha))
    ordered = [results[r.role.role] for r in rendered]
    return {"ok": all(r["status"] in ("baked", "up-to-date") for r in ordered),
            "target": target, "seconds": round(time.monotonic() - started, 2),
            "bakes": ordered}


def _refuse_replacing_in_use(rendered: list[Rendered], state: Path) -> None:
    """A forced bake of the same version and key deletes and recreates the artifact's
    directory: the disks of the cluster nodes booted from it are overlays on its disk."""
    from builder.bake.targets import qemu
    from builder.cluster.state import artifacts_in_use

    used = artifacts_in_use(state)
    for item in rendered:
        artifact = qemu.artifact_dir(state, item)
        if artifact.resolve() in used:
            raise UserError(f"would replace {artifact} under the cluster nodes booted from "
                            f"it ({', '.join(used[artifact.resolve()])}): take their cluster "
                            "down first (`builder cluster down --env ENV`) or bake another "
                            "version", field="--force")


def _bake_qemu(todo: list[Rendered], env: Environment, project: Project, state: Path,
               registry: Registry, sha: str, parallel: int,
               layers: bool = True) -> dict[str, dict]:
    from builder.bake.targets import qemu

    prep = Progress("base: ")
    base_for = {}
    for item in todo:
        key = bases.identity(item.role.base)
        if key not in base_for:
            base_for[key] = bases.ensure(state, item.role.base, prep)
            if base_for[key].kernel is None:
                # The bake boots the base's kernel directly and inspects its whole-disk ext4
                # offline; a partitioned official image needs neither and gets neither yet.
                raise UserError("an official cloud image is verified and cached, but qemu "
                                "bakes need a base made by `builder base`",
                                file=project.display(item.role.path), field="base.url")
    first = next(iter(base_for.values()))
    accel = accelerators.choose(state, first.kernel, first.initrd)
    prep.say(f"accelerator {accel}")
    cancel = threading.Event()
    results: dict[str, dict] = {}
    sources, failed = (_layers(todo, state, env, parallel, project.templates) if layers
                       else ({}, {}))
    if failed:
        cancel.set()
        results.update(failed)
        todo = [item for item in todo if item.role.role not in failed]

    # Several TCG guests with two vCPUs each on a 2-core host spin on each other's locks:
    # two bakes side by side booted in 108-124 s, where one alone reaches cloud-init in 31 s.
    vm_cpus = 1 if accel != "kvm" and min(parallel, len(todo)) > 1 else None

    def one(item: Rendered) -> dict:
        role = item.role.role
        progress = Progress(f"{role}: ")
        begun = time.monotonic()
        if cancel.is_set():
            return {"role": role, "status": "cancelled", "content_key": item.content_key,
                    "seconds": 0.0}
        progress.say(f"baking {item.role.version} key {item.content_key[:12]}")
        try:
            source = sources.get(role) or base_for[bases.identity(item.role.base)]
            if role not in sources:
                progress.say("no package layer (--no-layer): apt runs in the bake VM"
                             if not layers else
                             "no package layer (no packages, or not a local base)")
            facts = qemu.bake(item, source, accel, state, project, sha, progress, cancel,
                              cpus=vm_cpus, mirrors=inspect.mirror_urls(env.mirrors))
        except packerrun.Cancelled:
            progress.say("cancelled, VM and temporary files removed")
            return {"role": role, "status": "cancelled", "content_key": item.content_key,
                    "seconds": round(time.monotonic() - begun, 1)}
        except OperationError as exc:
            cancel.set()
            progress.say(f"FAILED: {exc}")
            return {"role": role, "status": "failed", "error": str(exc),
                    "content_key": item.content_key,
                    "seconds": round(time.monotonic() - begun, 1)}
        seconds = round(time.monotonic() - begun, 1)
        registry.record(Artifact(
            role=role, version=item.role.version, target="qemu",
            content_key=item.content_key, artifact=facts["artifact"], base=facts["base"],
            git_sha=sha, packer_version=packer.version_string(packer.target_version()),
            tests_passed=True, tests=facts["tests"], timings={**facts["timings"],
                                                              "total": seconds}))
        progress.say(f"baked in {seconds} s -> {facts['artifact']}")
        return {"role": role, "status": "baked", "content_key": item.content_key,
                "artifact": facts["artifact"], "seconds": seconds,
                "timings": facts["timings"], "tests": facts["tests"],
                "size_bytes": facts["size_bytes"]}

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=parallel)
    futures = {pool.submit(one, item): item for item in todo}
    try:
        for future in concurrent.futures.as_completed(futures):
            res = future.result()
            results[res["role"]] = res
    except BaseException:
        cancel.set()  # every running bake stops its VM and cleans up before we leave
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return results


def _layers(todo: list[Rendered], state: Path, env: Environment, parallel: int,
            templates: Path) -> tuple[dict[str, bases.Base], dict[str, dict]]:
    """Every role's package layer, before any bake VM starts: native work on the host's
    cores, `parallel` at a time, that would otherwise starve a booting TCG guest. Roles with
    the same packages share one build. Returns the layer per role, and a failed result per
    role whose layer could not be built."""
    by_layer: dict[str, list[Rendered]] = {}
    for item in todo:
        if layer.applies(item.role, "qemu"):
            ident = layer.role_identity(item.role, env.mirrors, templates)
            by_layer.setdefault(ident, []).append(item)
    sources: dict[str, bases.Base] = {}
    failed: dict[str, dict] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        futures = {pool.submit(layer.ensure, state, items[0].role, env.mirrors,
                               Progress(f"{items[0].role.role}: "),
                               chroot_scripts=layer.scripts(items[0].role, templates)): items
                   for items in by_layer.values()}
        for future in concurrent.futures.as_completed(futures):
            items = futures[future]
            try:
                built = future.result()
            except OperationError as exc:
                failed.update({i.role.role: {"role": i.role.role, "status": "failed",
                                             "error": f"package layer: {exc}",
                                             "content_key": i.content_key, "seconds": 0.0}
                               for i in items})
                continue
            sources.update({i.role.role: built for i in items})
    return sources, failed
