"""The static gate: nothing boots and nothing is spent before every check here passes."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import hcl2
import jinja2

from builder.bake import packer, sshkey
from builder.errors import UserError
from builder.gate import configcheck, passcache, samplebundle
from builder.render import Rendered, jinja_env, render_template
from builder.spec.project import Project
from builder.vendoring import bundles

SAMPLE_KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHVhbGlkYXRpb24tb25seS1zYW1wbGUta2V5LTAwMDA"
              " validate")
EMPTY_SHA256 = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@dataclasses.dataclass
class Check:
    role: str
    name: str
    ok: bool
    detail: str = ""
    skipped: bool = False
    seconds: float = 0.0

    def as_json(self) -> dict:
        return dataclasses.asdict(self)


def _timed(role: str, name: str, func) -> Check:
    started = time.monotonic()
    try:
        detail = func() or ""
        check = Check(role, name, True, detail)
    except _Skip as exc:
        check = Check(role, name, True, str(exc), skipped=True)
    except _Fail as exc:
        check = Check(role, name, False, str(exc))
    check.seconds = round(time.monotonic() - started, 3)
    return check


class _Fail(Exception):
    pass


class _Skip(Exception):
    pass


# python-hcl2 builds its parser on first use behind an lru_cache, which does not lock:
# roles parsed at once each built it (three builds seen for three roles, ~0.1 s CPU each).
# Parsing holds the GIL anyway, so parsing one file at a time costs no wall time.
_HCL2 = threading.Lock()


def _hcl_parse(item: Rendered) -> str:
    for path in sorted(item.directory.glob("*.pkr.hcl")):
        try:
            with path.open() as fh, _HCL2:
                hcl2.load(fh)
        except Exception as exc:  # python-hcl2 raises lark errors of many kinds
            raise _Fail(f"{path.name}: {str(exc).splitlines()[0]}") from None
    return "parsed"


def sample_files(scratch: Path) -> Path:
    """The empty files and the throwaway key that sample_vars points at, made once per run:
    every role's `packer validate` only reads them."""
    scratch.mkdir(parents=True, exist_ok=True)
    for name in ("user-data", "meta-data", "vmlinuz", "initrd.img", "base.qcow2"):
        (scratch / name).write_text("")
    sshkey.generate(scratch / "key", "builder-validate")
    return scratch


def sample_vars(item: Rendered, scratch: Path) -> list[str]:
    """Harmless values for the variables only a bake knows, so `packer validate` can run;
    scratch holds sample_files."""
    values = {
        "content_key": item.content_key, "python": "python3", "project_root": str(scratch),
        "junit_path": str(scratch / "junit.xml"), "manifest_path": str(scratch / "manifest.json"),
    }
    if item.target == "qemu":
        values |= {
            "base_image": str(scratch / "base.qcow2"), "base_checksum": EMPTY_SHA256,
            "kernel": str(scratch / "vmlinuz"), "initrd": str(scratch / "initrd.img"),
            "seed_dir": str(scratch), "ssh_private_key_file": str(scratch / "key"),
            "output_dir": str(scratch / "out"),
        }
    else:
        values |= {"builder_cidr": "192.0.2.10/32"}
    return [arg for k, v in values.items() for arg in ("-var", f"{k}={v}")]


def _run_packer(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([packer.binary(), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False, env=packer.environment(packer.SHORT_LIVED))


def _packer_fmt_batch(items: list[Rendered], scratch: Path) -> bool:
    """Whether every role's HCL is canonically formatted, from one `packer fmt -check` of
    a directory holding them all (each packer start-up re-executes itself per plugin: one
    run instead of six). False sends each role to its own run, which says what is wrong."""
    if not packer.binary() or not items:
        return False
    folder = scratch / "fmt"
    folder.mkdir()
    for item in items:
        shutil.copyfile(item.hcl, folder / f"{item.role.role}.pkr.hcl")
    return _run_packer(["fmt", "-check", "."], folder).returncode == 0


def _packer_fmt(item: Rendered, batch: concurrent.futures.Future | None = None) -> str:
    if not packer.binary():
        raise _Skip("packer not installed")
    if batch is not None and batch.result():
        return "formatted"
    proc = _run_packer(["fmt", "-check", "-diff", item.hcl.name], item.directory)
    if proc.returncode != 0:
        diff = (proc.stdout + proc.stderr).strip().splitlines()
        raise _Fail("not canonically formatted: " + " | ".join(diff[:6]))
    return "formatted"


def _packer_validate(item: Rendered, samples: Path, cache: passcache.Cache | None) -> str:
    if not packer.binary():
        raise _Skip("packer not installed")
    args = sample_vars(item, samples)
    digest = cache.key(item.target, item.hcl, item.content_key, args, samples) if cache else ""
    if cache and cache.passed(digest):
        return "passed before with these inputs (cached)"
    proc = _run_packer(["validate", *args, item.hcl.name], item.directory)
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
        raise _Fail(" | ".join(lines[:6]))
    detail = f"packer {packer.version_string(packer.version())}"
    if cache:
        cache.remember(digest, detail)
    return detail


# `cloud-init schema -c FILE` spends ~0.15 s CPU per file starting Python and importing
# cloud-init, most of the check. This runs the very function that command runs (same
# output, same exit status) for many files in one interpreter.
_SCHEMA_BATCH = """
import contextlib, io, json, sys
from cloudinit.config import schema
parser = schema.get_parser()
results = {}
for path in sys.argv[1:]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = schema.handle_schema_args("schema", parser.parse_args(["-c", path])) or 0
        except SystemExit as exc:
            code = exc.code
            if isinstance(code, str):
                print(code, file=sys.stderr)
            code = code if isinstance(code, int) else (0 if code is None else 1)
    results[path] = [code, out.getvalue() + err.getvalue()]
print(json.dumps(results))
"""


def _interpreter(exe: str) -> list[str] | None:
    """The Python a script runs with (its #! line), or None when it is no Python script."""
    try:
        with open(exe, "rb") as fh:
            first = fh.readline(256).decode("utf-8", "replace").strip()
    except OSError:
        return None
    if not first.startswith("#!") or "python" not in first:
        return None
    return first[2:].split()


def _cloud_init_batch(paths: list[Path]) -> tuple[dict[str, tuple[int, str]], float]:
    """Exit status and output of `cloud-init schema -c` for each path, from one interpreter,
    and the seconds that took; empty when that cannot be done here (each check then runs
    the command itself)."""
    started = time.monotonic()
    exe = shutil.which("cloud-init")
    python = _interpreter(exe) if exe else None
    if not python or not paths:
        return {}, 0.0
    try:
        proc = subprocess.run([*python, "-c", _SCHEMA_BATCH, *map(str, paths)],
                              capture_output=True, text=True, timeout=120, check=False)
        results = json.loads(proc.stdout) if proc.returncode == 0 else {}
        found = {path: (int(code), str(output)) for path, (code, output) in results.items()}
    except (OSError, subprocess.SubprocessError, ValueError, TypeError, AttributeError):
        found = {}
    return found, time.monotonic() - started


def _cloud_init_schema(path: Path,
                       batch: concurrent.futures.Future | None = None) -> str:
    exe = shutil.which("cloud-init")
    if not exe:
        raise _Skip("cloud-init not installed")
    found = batch.result()[0].get(str(path)) if batch else None
    if found is None:
        proc = subprocess.run([exe, "schema", "-c", str(path)], capture_output=True,
                              text=True, timeout=60, check=False)
        found = (proc.returncode, proc.stdout + proc.stderr)
    returncode, output = found
    if returncode != 0:
        lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
        raise _Fail(f"{path.name}: " + " | ".join(lines[:6]))
    return "valid"


def _shell_syntax(item: Rendered) -> str:
    for path in sorted((item.directory / "files").rglob("*.sh")):
        proc = subprocess.run(["sh", "-n", str(path)], capture_output=True, text=True,
                              check=False)
        if proc.returncode != 0:
            raise _Fail(f"{path.relative_to(item.directory)}: {proc.stderr.strip()}")
    return "sh -n"


def _bundle(item: Rendered) -> str:
    """Which bundle the role was rendered with: the vendor's (its tarball verified again as
    placed) or a sample standing in for the static checks."""
    [placed] = sorted((item.directory / "files" / "bundle").glob("*" + bundles.SUFFIX))
    try:
        found = bundles.verify(placed)
    except UserError as exc:
        raise _Fail(exc.render()) from None
    if samplebundle.is_sample(found):
        return f"SAMPLE {found.app} bundle (none in vendor/): static checks only"
    return f"{found.path.name} verified ({'stand-in' if found.stand_in else 'application'})"


BOOT = "boot"  # where validate renders a role's boot-time templates, in its directory


def _boot_templates(item: Rendered) -> str:
    """Each rendered boot-time template checked by the program that reads it."""
    done = []
    for path in sorted(p for p in (item.directory / BOOT).rglob("*")
                       if p.is_file() and ".root" not in p.parts):
        try:
            how = configcheck.check(path)
        except configcheck.ConfigError as exc:
            raise _Fail(str(exc)) from None
        done.append(f"{path.relative_to(item.directory / BOOT)}: {how}")
    return "; ".join(done)


def bake_seed(project: Project, public_key: str, target: str) -> str:
    from builder.render import BAKE_USERS

    env = jinja_env(project)
    return render_template(env, "bake-seed.yaml.j2",
                           {"bake_user": BAKE_USERS[target], "ssh_public_key": public_key},
                           "cloud-init/bake-seed.yaml.j2")


def _write_bake_seed(project: Project, target: str, scratch: Path) -> Path | str:
    """The bake seed rendered with a sample key into scratch, or why it did not render."""
    try:
        text = bake_seed(project, SAMPLE_KEY, target)
    except (UserError, jinja2.TemplateError) as exc:
        return str(exc)
    path = scratch / "bake-seed"
    path.write_text(text)
    return path


def _bake_seed_schema(seed: Path | str, batch: concurrent.futures.Future) -> str:
    if isinstance(seed, str):
        raise _Fail(seed)
    return _cloud_init_schema(seed, batch)


# The external checks are separate processes (Go and Python start-up, mostly CPU): run
# them side by side, a few more than the cores so one's start-up overlaps another's wait.
WORKERS = max(2, (os.cpu_count() or 1) + 1)
# Longest first, so the pool does not end waiting on one slow check started last.
_COST = {"packer-validate": 0, "bake-seed-schema": 1, "packer-fmt": 2}


def cache_dir(project: Project) -> Path:
    return project.state / "cache" / "packer-validate"


def run(rendered: list[Rendered], project: Project, cache: bool = True) -> list[Check]:
    """Every check of every role; results in a fixed order (role by role) whatever order
    the checks finished in. With `cache`, a `packer validate` that passed before with the
    same inputs is not run again (passcache)."""
    if not rendered:
        return []
    exe = packer.binary()
    passes = passcache.Cache(cache_dir(project), exe) \
        if cache and exe and project is not None else None
    with tempfile.TemporaryDirectory(prefix="builder-validate-") as scratch:
        return _run(rendered, project, Path(scratch), passes)


def _run(rendered: list[Rendered], project: Project, scratch: Path,
         cache: passcache.Cache | None) -> list[Check]:
    qemu = rendered[0].target == "qemu"
    seed = _write_bake_seed(project, "qemu", scratch) if qemu else None
    samples = sample_files(scratch / "packer-vars") if packer.binary() else scratch
    schema_paths = [i.directory / "user-data" for i in rendered]
    if isinstance(seed, Path):
        schema_paths.append(seed)
    with concurrent.futures.ThreadPoolExecutor(max_workers=WORKERS,
                                               thread_name_prefix="validate") as pool:
        # First in the queue, so a check never waits on a batch not yet started.
        schemas = pool.submit(_cloud_init_batch, schema_paths)
        formatted = pool.submit(_packer_fmt_batch, rendered, scratch)
        jobs: list[tuple[str, str, Callable[[], str]]] = []
        for item in rendered:
            role = item.role.role
            jobs.append((role, "hcl2-parse", lambda item=item: _hcl_parse(item)))
            jobs.append((role, "packer-fmt", lambda item=item: _packer_fmt(item, formatted)))
            jobs.append((role, "packer-validate",
                         lambda item=item: _packer_validate(item, samples, cache)))
            jobs.append((role, "user-data-schema",
                         lambda item=item: _cloud_init_schema(item.directory / "user-data",
                                                              schemas)))
            jobs.append((role, "shell-syntax", lambda item=item: _shell_syntax(item)))
            if item.role.templates:
                jobs.append((role, "boot-templates", lambda item=item: _boot_templates(item)))
            if item.role.bundle is not None:
                jobs.append((role, "bundle", lambda item=item: _bundle(item)))
        if qemu:
            jobs.append(("*", "bake-seed-schema", lambda: _bake_seed_schema(seed, schemas)))
        order = sorted(range(len(jobs)), key=lambda i: _COST.get(jobs[i][1], 3))
        futures = {i: pool.submit(_timed, *jobs[i]) for i in order}
        checks = [futures[i].result() for i in range(len(jobs))]
    # The batch did the user-data checks' work: each reports its share of that time.
    batched, seconds = schemas.result()
    for check in checks:
        if check.name in ("user-data-schema", "bake-seed-schema") and batched:
            check.seconds = round(check.seconds + seconds / len(batched), 3)
    return checks
