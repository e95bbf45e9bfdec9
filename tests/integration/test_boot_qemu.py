"""Instances configure themselves at boot: a baked image booted with nothing but a NoCloud
seed (meta-data, user-data with its peers and secrets) comes up serving, and its post-boot
testinfra suite passes."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from builder import spec as specs
from builder.bake import imagetest, sshkey
from builder.cluster import seed
from builder.cluster.vm import VM, wait_for_file
from builder.project import find_project

pytestmark = pytest.mark.vm
# QEMU user networking gives the (only) guest this address.
GUEST_ADDRESS = "10.0.2.15"


def _artifact(builder, role: str) -> Path:
    proc = builder.run("bake", role, "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    (bake,) = json.loads(proc.stdout)["bakes"]
    assert bake["status"] == "up-to-date"
    return Path(bake["artifact"])


SAMPLE_DB = [{"name": f"etcd-patroni-{i}", "address": f"10.20.0.1{i}"} for i in (1, 2, 3)]
# What each role is booted with: its peers as discovery would hand them over.
BOOTS = {
    "redis": {"redis": [{"name": "redis-0", "address": GUEST_ADDRESS}]},
    "haproxy": {"haproxy": [{"name": "haproxy-0", "address": GUEST_ADDRESS}],
                "etcd-patroni": SAMPLE_DB, "saleor-api": [], "saleor-dashboard": []},
}


@pytest.mark.parametrize("role_name", sorted(BOOTS))
def test_instance_configures_itself_from_its_seed(baked, tmp_path, role_name):
    builder, _ = baked
    artifact = _artifact(builder, role_name)
    project = find_project(start=builder.root)
    roles = specs.load_roles(project)
    role = roles[role_name]
    env = specs.load_environment("local", project, roles)
    operator = sshkey.generate(tmp_path / "operator", "builder-test-operator")
    user_data = seed.user_data(
        role, env, project, peers=BOOTS[role_name],
        secrets={name: secrets.token_urlsafe(24) for name in role.secrets}, ssh_keys=[operator])
    iso = seed.write_iso(tmp_path / "seed", {
        "user-data": user_data,
        "meta-data": seed.meta_data(f"i-{role_name}-boot-test", f"{role_name}-0",
                                    GUEST_ADDRESS)})
    with VM(f"{role_name}-0", artifact, tmp_path / "vm", iso) as vm:
        vm.wait_ssh()
        wait_for_file(vm, tmp_path / "operator", "debian", "/run/builder/agent.json")
        rc = imagetest.run(artifact / "spec.json", "boot", f"debian@127.0.0.1:{vm.ssh_port}",
                           tmp_path / "operator", None, tmp_path / "junit.xml", builder.root)
        console = vm.console.read_text(errors="replace")[-3000:]
    assert rc == 0, console
    assert vm.proc.poll() is not None  # stopped, whatever happened
