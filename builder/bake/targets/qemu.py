"""Bake one role on the local qemu target: seed, Packer, offline hygiene check, publish."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import threading
from pathlib import Path

from builder.bake import inspect, junit, packerrun, sshkey
from builder.bake.base import Base
from builder.errors import OperationError
from builder.gate.validate import bake_seed
from builder.progress import Progress
from builder.render import BAKE_USERS, Rendered
from builder.spec.project import Project


def artifact_dir(state: Path, item: Rendered) -> Path:
    return state / "qemu" / item.role.role / f"{item.role.version}-{item.content_key[:12]}"


def bake(item: Rendered, base: Base, accel: str, state: Path, project: Project, git_sha: str,
         progress: Progress, cancel: threading.Event, cpus: int | None = None,
         mirrors: list[str] = ()) -> dict:
    """Returns the artifact facts; raises OperationError (failed) or packerrun.Cancelled.
    Whatever happens, nothing is left but a complete, tested artifact. `cpus` overrides the
    spec's vCPU count; `mirrors` are the bake's mirror URLs (inspect.mirror_urls), which the
    sealed disk must no longer name."""
    final = artifact_dir(state, item)
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".tmp-bake-{item.role.role}-", dir=final.parent))
    try:
        pub = sshkey.generate(work / "bake_key")
        seed = work / "seed"
        seed.mkdir()
        (seed / "user-data").write_text(bake_seed(project, pub, "qemu"))
        (seed / "meta-data").write_text(
            f"instance-id: bake-{item.role.role}-{work.name[-8:]}\n"
            f"local-hostname: bake-{item.role.role}\n")
        variables = {
            "base_image": base.image, "base_checksum": base.checksum,
            "kernel": base.kernel or "", "initrd": base.initrd or "",
            "seed_dir": str(seed), "ssh_private_key_file": str(work / "bake_key"),
            "output_dir": str(work / "packer-out"), "accelerator": accel,
            "cpu_model": "host" if accel == "kvm" else "max",
            "cpus": cpus or item.role.targets.qemu.cpus,
            "python": sys.executable, "project_root": str(project.root),
            "junit_path": str(work / "junit.xml"), "manifest_path": str(work / "manifest.json"),
            "content_key": item.content_key, "git_sha": git_sha,
        }
        rc = packerrun.build(item.hcl, variables, work / "packer.log", progress, cancel)
        if rc != 0 and packerrun.never_reached_ssh(work / "packer.log"):
            # A TCG guest on a starved host sometimes hangs in early boot; the next boot of
            # the same disk usually comes up in 40 s. Once, and the log says so.
            first = _keep_log(state, item, work, suffix="ssh-timeout")
            progress.say(f"the VM never reached SSH; powered off, booting once more "
                         f"(first attempt's logs: {first})")
            rc = packerrun.build(item.hcl, variables, work / "packer.log", progress, cancel)
        tests = junit.summary(work / "junit.xml")
        if rc != 0:
            stage = _failed_stage(work / "packer.log")
            raise OperationError(f"{item.role.role}: packer build failed in {stage} "
                                 f"(tests: {tests['tests']} run, {tests['failures']} failed); "
                                 f"log kept at {_keep_log(state, item, work)}")
        if not junit.passed(tests):
            raise OperationError(f"{item.role.role}: no passing test report from the bake")
        qcow2 = work / "packer-out" / f"{item.role.role}.qcow2"
        progress.stage("inspect", "hygiene of the sealed disk")
        with inspect.Image(qcow2) as img:
            problems = inspect.hygiene(img, BAKE_USERS["qemu"], mirrors)
            if problems:
                raise OperationError(f"{item.role.role}: image not clean: {'; '.join(problems)}")
            inspect.extract_boot(img, work / "packer-out")
        progress.finish()
        out = work / "packer-out"
        for name in ("junit.xml", "packer.log"):
            shutil.move(work / name, out / name)
        # The artifact describes itself: boot-time tests read the spec it was baked from.
        shutil.copyfile(item.directory / "spec.json", out / "spec.json")
        console = work / "console.log"
        if console.exists():
            shutil.move(console, out / "console.log")
        manifest = {
            "role": item.role.role, "version": item.role.version, "target": "qemu",
            "content_key": item.content_key, "base": base.parent or base.identity,
            "layer": base.identity if base.parent else None, "git_sha": git_sha,
            "accelerator": accel, "image": qcow2.name, "kernel": "vmlinuz",
            "initrd": "initrd.img", "tests": tests,
            "size_bytes": qcow2.stat().st_size, "timings": dict(progress.timings),
        }
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if final.exists():
            shutil.rmtree(final)
        out.rename(final)
        return {**manifest, "artifact": str(final)}
    finally:
        packerrun.kill_leftovers(str(work))
        shutil.rmtree(work, ignore_errors=True)


def _failed_stage(log: Path) -> str:
    stage = "boot"
    for line in log.read_text(errors="replace").splitlines():
        for pattern, name in packerrun.STAGES:
            if pattern.search(line):
                stage = name
    return stage


def _keep_log(state: Path, item: Rendered, work: Path, suffix: str = "failed") -> Path:
    """A failed bake leaves no artifact, but its packer log and the guest's serial console
    (the only clue to a boot that hung) are worth reading: kept side by side."""
    logs = state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    dest = logs / f"{item.role.role}-{item.content_key[:12]}-{suffix}.log"
    shutil.copyfile(work / "packer.log", dest)
    console = work / "console.log"
    if console.exists():
        shutil.copyfile(console, dest.with_name(dest.stem + ".console.log"))
    return dest
