"""The content key: what determines an image, and nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder import render as rendering
from builder import spec as specs
from builder.spec.project import find_project

from .helpers import ROLES, copy_project, run_builder


def keys(root: Path, out: Path, target: str = "qemu", env: str = "local") -> dict[str, str]:
    """Content key of every role, rendered from the project at root."""
    project = find_project(start=root)
    loaded = specs.load_roles(project)
    environment = specs.load_environment(env, project, loaded)
    results = rendering.render(list(loaded.values()), target, environment, project, out)
    return {r.role.role: r.content_key for r in results}


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{path} no longer holds {old!r}: update this test"
    path.write_text(text.replace(old, new))


@pytest.fixture
def before(project, tmp_path):
    return {t: keys(project, tmp_path / "before", t) for t in ("qemu", "aws")}


def changed(old: dict[str, str], new: dict[str, str]) -> set[str]:
    assert old.keys() == new.keys()
    return {role for role in old if old[role] != new[role]}


def test_keys_are_sha256_and_differ_per_role_and_target(before):
    for target in ("qemu", "aws"):
        assert sorted(before[target]) == sorted(ROLES)
        assert all(len(k) == 64 and int(k, 16) >= 0 for k in before[target].values())
        assert len(set(before[target].values())) == len(ROLES)
    assert not set(before["qemu"].values()) & set(before["aws"].values())


def test_stable_across_renders_through_the_cli(project, tmp_path):
    runs = []
    for out in ("one", "two"):
        proc = run_builder(["render", "--all", "--json", "--out", str(tmp_path / out)], project)
        assert proc.returncode == 0, proc.stderr
        runs.append({r["role"]: r["content_key"] for r in json.loads(proc.stdout)["rendered"]})
    assert runs[0] == runs[1]
    # build.json in the rendered directory carries the same key `bake` will compare.
    build = json.loads((tmp_path / "two" / "qemu" / "redis" / "build.json").read_text())
    assert build["content_key"] == runs[1]["redis"]


def test_stable_across_project_copies_at_different_paths(before, project, tmp_path):
    elsewhere = copy_project(tmp_path / "somewhere" / "else" / "entirely")
    for target in ("qemu", "aws"):
        assert keys(elsewhere, tmp_path / f"other-{target}", target) == before[target]
    # And the same project rendered again, into another --out.
    assert keys(project, tmp_path / "again") == before["qemu"]


def test_role_template_change_changes_only_that_role(before, project, tmp_path):
    with (project / "templates" / "redis" / "redis.conf.j2").open("a") as fh:
        fh.write("# tuned\n")
    for target in ("qemu", "aws"):
        assert changed(before[target], keys(project, tmp_path / f"a-{target}", target)) \
            == {"redis"}


def test_package_list_change_changes_the_key(before, project, tmp_path):
    edit(project / "images" / "haproxy.yaml", "  - haproxy\n", "  - haproxy\n  - socat\n")
    assert changed(before["qemu"], keys(project, tmp_path / "a")) == {"haproxy"}


def test_package_version_pin_changes_the_key(before, project, tmp_path):
    edit(project / "images" / "redis.yaml", "  - redis-server\n", "  - redis-server=5:8.0.2-3\n")
    assert changed(before["qemu"], keys(project, tmp_path / "a")) == {"redis"}


def test_base_suite_change_changes_the_key(before, project, tmp_path):
    edit(project / "images" / "storefront.yaml", "  suite: trixie\n", "  suite: bookworm\n")
    for target in ("qemu", "aws"):
        assert changed(before[target], keys(project, tmp_path / f"a-{target}", target)) \
            == {"storefront"}


def test_shared_template_change_changes_every_key(before, project, tmp_path):
    with (project / "templates" / "provision" / "provision.sh.j2").open("a") as fh:
        fh.write("# one more step\n")
    assert changed(before["qemu"], keys(project, tmp_path / "a")) == set(ROLES)


def test_image_test_suite_change_changes_the_key(before, project, tmp_path):
    # An image is only as proven as its tests: a new test means a new bake.
    (project / "tests" / "images" / "redis" / "test_extra.py").write_text(
        "def test_more():\n    pass\n")
    assert changed(before["qemu"], keys(project, tmp_path / "a")) == {"redis"}


def test_boot_time_settings_do_not_change_the_key(before, project, tmp_path):
    """user-data is read at boot, never baked: other environments and user-data edits reuse
    the same image."""
    with (project / "cloud-init" / "node.yaml.j2").open("a") as fh:
        fh.write("# a comment in the boot-time user-data\n")
    (project / "environments").mkdir(exist_ok=True)
    (project / "environments" / "other.yaml").write_text(
        "name: other\ncluster_name: shop\nnetwork: {cidr: 10.99.0.0/24}\n"
        "nodes: {etcd-patroni: 5}\n")
    assert keys(project, tmp_path / "a", env="other") == before["qemu"]


def test_bake_settings_of_the_environment_change_the_key(before, project, tmp_path):
    # A package mirror changes what provisioning does, so it is part of the image.
    (project / "environments").mkdir(exist_ok=True)
    (project / "environments" / "mirrored.yaml").write_text(
        "name: mirrored\nmirrors: {apt: 'http://deb.example.test/debian'}\n")
    assert changed(before["qemu"], keys(project, tmp_path / "a", env="mirrored")) == set(ROLES)
