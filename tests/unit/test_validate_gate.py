"""`builder validate`: the static gate passes on the real project, and fails (exit 1) on a
broken one, naming the role and check."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from builder.gate import validate as gate

from .helpers import REPO, ROLES, run_builder

PER_ROLE = ["hcl2-parse", "packer-fmt", "packer-validate", "user-data-schema", "shell-syntax"]
HAVE_PACKER = shutil.which("packer") is not None
HAVE_CLOUD_INIT = shutil.which("cloud-init") is not None


BUNDLED = ("saleor-api", "saleor-dashboard", "storefront")


def expected_checks(target: str) -> list[tuple[str, str]]:
    # Every role has boot-time templates.
    checks = [(role, name) for role in ROLES
              for name in [*PER_ROLE, "boot-templates"] + (["bundle"] if role in BUNDLED else [])]
    return checks + ([("*", "bake-seed-schema")] if target == "qemu" else [])


@pytest.mark.parametrize("target", ["qemu", "aws"])
def test_validate_all_passes(target, tmp_path):
    proc = run_builder(["validate", "--all", "--target", target, "--json"], REPO,
                       state=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is True and report["target"] == target
    assert report["roles"] == list(ROLES)
    assert sorted(report["content_keys"]) == sorted(ROLES)
    # Same checks in the same order (role by role), however they were scheduled.
    assert [(c["role"], c["name"]) for c in report["checks"]] == expected_checks(target)
    assert all(c["ok"] for c in report["checks"])
    skipped = {c["name"] for c in report["checks"] if c["skipped"]}
    if HAVE_PACKER:
        assert not skipped & {"packer-validate", "packer-fmt"}
    if HAVE_CLOUD_INIT:
        assert not skipped & {"user-data-schema", "bake-seed-schema"}
    if HAVE_PACKER and HAVE_CLOUD_INIT:
        assert not skipped
    bundles = {c["role"]: c["detail"] for c in report["checks"] if c["name"] == "bundle"}
    assert all(d.endswith("verified (stand-in)") for d in bundles.values()), bundles
    assert report["samples"] == []


@pytest.mark.parametrize("target", ["qemu", "aws"])
def test_validate_all_checks_the_saleor_tier_without_bundles(target, tmp_path, monkeypatch):
    """A fresh clone has no vendor/: every role is still checked, the Saleor tier with a
    sample bundle, and the report says so role by role and in its closing line."""
    monkeypatch.setenv("BUILDER_VENDOR", str(tmp_path / "empty-vendor"))
    proc = run_builder(["validate", "--all", "--target", target, "--json"], REPO,
                       state=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["roles"] == list(ROLES) and report["skipped"] == []
    assert [(c["role"], c["name"]) for c in report["checks"]] == expected_checks(target)
    assert all(c["ok"] for c in report["checks"])
    assert report["samples"] == list(BUNDLED)
    assert sorted(report["content_keys"]) == ["etcd-patroni", "haproxy", "redis"]
    details = {c["role"]: c["detail"] for c in report["checks"] if c["name"] == "bundle"}
    assert details == {role: f"SAMPLE {app} bundle (none in vendor/): static checks only"
                       for role, app in zip(BUNDLED, ("saleor", "dashboard", "storefront"),
                                            strict=True)}
    assert not (tmp_path / "empty-vendor").exists(), "a sample went into vendor/"
    text = run_builder(["validate", "--all", "--target", target], REPO, state=tmp_path)
    assert text.returncode == 0 and text.stdout.splitlines()[-1].startswith(
        "checked with a sample bundle (none in vendor/): saleor-api, saleor-dashboard, "
        "storefront;"), text.stdout


def test_a_broken_bundle_in_vendor_fails_its_role(tmp_path, monkeypatch):
    """A real bundle is verified, not replaced by a sample: a corrupt one fails the gate."""
    vendor = tmp_path / "vendor"
    vendor.mkdir()
    (vendor / "dashboard-1.0.0.tar.gz").write_bytes(b"not a tarball")
    monkeypatch.setenv("BUILDER_VENDOR", str(vendor))
    proc = run_builder(["validate", "saleor-dashboard"], REPO, state=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "dashboard-1.0.0.tar.gz" in proc.stderr and "not a readable gzip tar" in proc.stderr


@pytest.mark.skipif(not (HAVE_PACKER and HAVE_CLOUD_INIT), reason="needs packer and cloud-init")
def test_validate_fails_on_a_broken_project(project):
    # HCL that parses but is not canonically formatted: every role's packer-fmt must fail.
    qemu = project / "templates" / "packer" / "qemu.pkr.hcl.j2"
    qemu.write_text(qemu.read_text().replace('  format           = "qcow2"',
                                             '  format = "qcow2"'))
    # User-data that is YAML but not valid cloud-config, for one role only.
    (project / "cloud-init" / "redis.yaml.j2").write_text(
        "#cloud-config\n# {{ role.role }}\nruncmd: 5\n")
    proc = run_builder(["validate", "redis", "haproxy", "--json"], project)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is False
    failed = {(c["role"], c["name"]) for c in report["checks"] if not c["ok"]}
    assert failed == {("redis", "packer-fmt"), ("haproxy", "packer-fmt"),
                      ("redis", "user-data-schema")}
    detail = {(c["role"], c["name"]): c["detail"] for c in report["checks"]}
    assert "redis.pkr.hcl" in detail[("redis", "packer-fmt")]
    assert "user-data" in detail[("redis", "user-data-schema")]


def _packer_validate_detail(project: Path, *extra: str) -> tuple[int, str]:
    proc = run_builder(["validate", "redis", "--json", *extra], project)
    [check] = [c for c in json.loads(proc.stdout)["checks"] if c["name"] == "packer-validate"]
    return proc.returncode, check["detail"]


@pytest.mark.skipif(not HAVE_PACKER, reason="needs packer")
def test_packer_validate_runs_again_unless_it_passed_with_the_same_inputs(project):
    ran = _packer_validate_detail(project)
    assert ran[0] == 0 and ran[1].startswith("packer "), ran
    assert _packer_validate_detail(project) == (0, "passed before with these inputs (cached)")
    assert _packer_validate_detail(project, "--no-cache") == ran
    # Another rendered role is another input: Packer runs, and its verdict is kept apart.
    spec = project / "images" / "redis.yaml"
    spec.write_text(spec.read_text().replace("disk_size: ", "disk_size: 1", 1))
    assert _packer_validate_detail(project) == ran
    # A failure is never remembered: each run is Packer's own verdict.
    qemu = project / "templates" / "packer" / "qemu.pkr.hcl.j2"
    qemu.write_text(qemu.read_text().replace('format           = "qcow2"',
                                             'format           = "qcow3"'))
    for _ in range(2):
        code, detail = _packer_validate_detail(project)
        assert code == 1 and "invalid format" in detail, detail


def test_results_keep_their_order_whatever_finishes_first(monkeypatch):
    """The pool may finish checks in any order; the report is role by role, check by check."""
    import time

    def slow_first(item, *batch):
        time.sleep(0.05 if item.role.role == "a" else 0)
        return item.role.role

    class Item:
        def __init__(self, name):
            self.role = type("R", (), {"role": name, "bundle": None, "templates": []})()
            self.target = "aws"
            self.directory = REPO

    for name in ("_hcl_parse", "_packer_fmt", "_packer_validate", "_shell_syntax"):
        monkeypatch.setattr(gate, name, slow_first)
    monkeypatch.setattr(gate, "_cloud_init_schema", lambda path, batch=None: "valid")
    monkeypatch.setattr(gate, "_cloud_init_batch", lambda paths: ({}, 0.0))
    monkeypatch.setattr(gate, "_packer_fmt_batch", lambda items, scratch: False)
    checks = gate.run([Item("a"), Item("b")], None)
    assert [(c.role, c.name) for c in checks] == [(r, n) for r in "ab" for n in PER_ROLE]
    assert [c.detail for c in checks if c.name != "user-data-schema"] == ["a"] * 4 + ["b"] * 4


USER_DATA = {
    "good": "#cloud-config\nruncmd: [[echo, hello]]\n",
    "wrong-type": "#cloud-config\nruncmd: 5\n",
    "no-header": "runcmd: [[echo, hello]]\n",
    "not-yaml": "#cloud-config\nruncmd: [echo\n",
}


@pytest.fixture
def user_data(tmp_path):
    paths = []
    for name, text in USER_DATA.items():
        path = tmp_path / name
        path.write_text(text)
        paths.append(path)
    return paths


def _schema_check(path, batch=None):
    return gate._timed("r", "user-data-schema", lambda: gate._cloud_init_schema(path, batch))


@pytest.mark.skipif(not HAVE_CLOUD_INIT, reason="needs cloud-init")
def test_batched_schema_checks_say_what_cloud_init_says(user_data):
    """One interpreter for all files must give each file exactly the CLI's verdict."""
    import concurrent.futures
    import subprocess

    batched, _ = gate._cloud_init_batch(user_data)
    assert set(batched) == {str(p) for p in user_data}
    for path in user_data:
        proc = subprocess.run(["cloud-init", "schema", "-c", str(path)], capture_output=True,
                              text=True, timeout=60, check=False)
        assert batched[str(path)] == (proc.returncode, proc.stdout + proc.stderr), path.name
    future = concurrent.futures.Future()
    future.set_result((batched, 0.1))
    verdicts = [(c.ok, c.detail) for c in (_schema_check(p, future) for p in user_data)]
    assert verdicts == [(c.ok, c.detail) for c in (_schema_check(p) for p in user_data)]
    assert [ok for ok, _ in verdicts] == [True, False, False, False]


@pytest.mark.skipif(not HAVE_CLOUD_INIT, reason="needs cloud-init")
def test_schema_checks_fall_back_to_one_command_per_file(user_data, monkeypatch):
    import concurrent.futures

    monkeypatch.setattr(gate, "_interpreter", lambda exe: None)
    batched, _ = gate._cloud_init_batch(user_data)
    assert batched == {}
    future = concurrent.futures.Future()
    future.set_result((batched, 0.0))
    checks = [_schema_check(p, future) for p in user_data]
    assert [c.ok for c in checks] == [True, False, False, False]
    assert "runcmd" in checks[1].detail and checks[1].detail.startswith("wrong-type: ")


def _path_without(tmp_path, missing: str) -> str:
    """A PATH with every program of this one except `missing`."""
    import os

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        for exe in sorted(Path(directory).glob("*")) if Path(directory).is_dir() else []:
            link = bin_dir / exe.name
            if exe.name != missing and not link.exists() and os.access(exe, os.X_OK):
                link.symlink_to(exe)
    return str(bin_dir)


@pytest.mark.skipif(not HAVE_PACKER, reason="needs packer to take it away")
def test_a_check_that_cannot_run_fails_the_gate_and_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", _path_without(tmp_path, "packer"))
    monkeypatch.delenv("BUILDER_PACKER", raising=False)
    proc = run_builder(["validate", "redis", "--target", "qemu"], REPO, state=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("not checked") and "redis packer-validate: packer not installed" \
        in last
    assert "2 could not run" in proc.stdout
    report = json.loads(run_builder(["validate", "redis", "--target", "qemu", "--json"],
                                    REPO, state=tmp_path).stdout)
    assert report["ok"] is False and len(report["unchecked"]) == 2
