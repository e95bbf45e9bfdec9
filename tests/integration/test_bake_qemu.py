"""Real bakes under QEMU (TCG here): the data-tier images are baked, tested inside their
builds, published only when clean, skipped when unchanged, and never half-left behind."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from conftest import DATA_TIER, qemu_processes

from builder.bake import inspect

pytestmark = pytest.mark.vm


def artifacts(state: Path) -> list[Path]:
    return sorted(p.parent for p in (state / "qemu").glob("*/*/manifest.json"))


def leftovers(state: Path) -> list[Path]:
    return sorted(p for pattern in ("qemu/*/.tmp-*", "bases/.tmp-*", "layers/.tmp-*")
                  for p in state.glob(pattern))


def test_each_role_baked_tested_and_registered(baked):
    builder, report = baked
    assert [b["status"] for b in report["bakes"]] == ["baked"] * 3
    for bake in report["bakes"]:
        art = Path(bake["artifact"])
        manifest = json.loads((art / "manifest.json").read_text())
        assert manifest["role"] == bake["role"]
        assert manifest["content_key"] == bake["content_key"]
        assert manifest["tests"]["tests"] >= 8 and manifest["tests"]["failures"] == 0
        for name in (f"{bake['role']}.qcow2", "vmlinuz", "initrd.img", "junit.xml"):
            assert (art / name).stat().st_size > 0, name
        assert set(manifest["timings"]) >= {"boot", "provision", "test", "shutdown"}
    with sqlite3.connect(builder.state / "registry.db") as db:
        rows = db.execute("SELECT role, tests_passed FROM artifacts ORDER BY role").fetchall()
    assert rows == [("etcd-patroni", 1), ("haproxy", 1), ("redis", 1)]
    assert leftovers(builder.state) == []


def test_published_disks_carry_no_host_identity_or_bake_user(baked):
    _, report = baked
    for bake in report["bakes"]:
        qcow2 = Path(bake["artifact"]) / f"{bake['role']}.qcow2"
        with inspect.Image(qcow2) as img:
            assert inspect.hygiene(img, "builder-bake") == []
            assert not [n for n in img.listdir("/etc/ssh") if n.startswith("ssh_host_")]
            assert "builder-bake" not in (img.read("/etc/passwd") or "")
            assert (img.read("/etc/machine-id") or "").strip() in ("", "uninitialized")
            # The image knows what it is, and nothing about any cluster.
            identity = json.loads(img.read("/etc/builder/image.json"))
            assert identity["content_key"] == bake["content_key"]
            assert not img.exists("/etc/builder/node.yaml")


def test_unchanged_roles_are_up_to_date_without_a_vm(baked):
    builder, _ = baked
    proc = builder.run("bake", *DATA_TIER, "--target", "qemu", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert [b["status"] for b in report["bakes"]] == ["up-to-date"] * 3
    assert "up to date" in proc.stderr
    assert "boot" not in proc.stderr


# Test only: drops the bake's SSH connection in the middle of the provisioning step, the
# first DROPS times that step runs (the count survives in the VM across attempts).
DROP_SSH = """#!/bin/sh
n=$(cat /var/tmp/builder-test-drops 2>/dev/null || echo 0)
if [ "$n" -lt {drops} ]; then
  echo $((n + 1)) > /var/tmp/builder-test-drops
  echo "drop-ssh: killing the provisioning connection (drop $((n + 1)))"
  pkill -KILL -f '^sshd(-session)?: builder-bake' || true
  sleep 60
  exit 1
fi
rm -f /var/tmp/builder-test-drops
echo "drop-ssh: connection left alone"
"""


def _add_dropping_step(builder, drops: int) -> None:
    import yaml

    (builder.root / "templates" / "redis" / "drop-ssh.sh").write_text(
        DROP_SSH.format(drops=drops))
    spec_path = builder.root / "images" / "redis.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    spec["scripts"] = [*spec.get("scripts", []), "drop-ssh.sh"]
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))


def test_changing_one_role_rebakes_only_that_role(baked):
    """A template edit and one more provisioning step for redis, a step that drops the bake's
    SSH connection the first time it runs: only redis is baked again, the step runs once
    more after the drop, and that artifact is the redis every later cluster boots."""
    builder, first = baked
    template = builder.root / "templates" / "redis" / "redis.conf.j2"
    template.write_text(template.read_text() + "# tuned for this test\n")
    _add_dropping_step(builder, drops=1)
    proc = builder.run("bake", *DATA_TIER, "--target", "qemu", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    status = {b["role"]: b for b in json.loads(proc.stdout)["bakes"]}
    assert status["haproxy"]["status"] == "up-to-date"
    assert status["etcd-patroni"]["status"] == "up-to-date"
    assert status["redis"]["status"] == "baked"
    old_key = {b["role"]: b["content_key"] for b in first["bakes"]}["redis"]
    assert status["redis"]["content_key"] != old_key
    log = (Path(status["redis"]["artifact"]) / "packer.log").read_text(errors="replace")
    assert "drop-ssh: killing the provisioning connection (drop 1)" in log
    assert "drop-ssh: connection left alone" in log
    assert qemu_processes(str(builder.state)) == []


def test_a_connection_dropped_twice_fails_the_bake_cleanly(make_builder):
    builder = make_builder("drop-twice")
    _add_dropping_step(builder, drops=2)
    proc = builder.run("bake", "redis", "--json")
    assert proc.returncode == 1, proc.stderr[-3000:]
    [bake] = json.loads(proc.stdout)["bakes"]
    assert bake["status"] == "failed" and "failed in provision" in bake["error"]
    assert artifacts(builder.state) == []
    assert leftovers(builder.state) == []
    assert qemu_processes(str(builder.state)) == []
    # What is left to read: the packer log and the guest's console, side by side.
    kept = sorted(p.name for p in (builder.state / "logs").iterdir())
    assert any(n.endswith("-failed.log") for n in kept), kept
    assert any(n.endswith("-failed.console.log") for n in kept), kept


def test_failing_image_test_fails_the_bake_and_stops_the_others(make_builder):
    builder = make_builder("broken")
    suite = builder.root / "tests" / "images" / "haproxy" / "test_bake_haproxy.py"
    suite.write_text(suite.read_text() + (
        "\n\ndef test_deliberately_broken(host):\n"
        "    assert host.package('no-such-package-in-this-image').is_installed\n"))
    proc = builder.run("bake", "haproxy", "etcd-patroni", "--parallel", "2", "--json")
    assert proc.returncode == 1, proc.stderr[-3000:]
    status = {b["role"]: b["status"] for b in json.loads(proc.stdout)["bakes"]}
    assert status["haproxy"] == "failed"
    # fail-fast: the other bake was stopped (or, if it raced to the end, it failed too)
    assert status["etcd-patroni"] in ("cancelled", "failed")
    assert "failed in test" in proc.stderr
    assert artifacts(builder.state) == []
    assert leftovers(builder.state) == []
    assert qemu_processes(str(builder.state)) == []
    with sqlite3.connect(builder.state / "registry.db") as db:
        assert db.execute("SELECT count(*) FROM artifacts").fetchone() == (0,)


def test_interrupted_bake_removes_its_vm_and_files(make_builder):
    builder = make_builder("interrupt")
    proc = builder.popen("bake", "redis")
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and not qemu_processes(str(builder.state)):
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(1)
        assert qemu_processes(str(builder.state)), "the bake VM never started"
        time.sleep(5)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, proc.stderr.read()
    assert qemu_processes(str(builder.state)) == []
    assert artifacts(builder.state) == []
    assert leftovers(builder.state) == []
